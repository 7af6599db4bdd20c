//! The 8250 UART at 0x3f8 (the guest's `console=ttyS0`), on vm-superio.
//!
//! Output goes to a log file (capped and rotated: `console_log`) and,
//! optionally, the host terminal. The last
//! lines are kept in memory so VMM errors can quote what the guest said
//! last, and a kernel panic line is remembered so a panic-triggered reset
//! is reported as a panic, not as a clean reboot.

use crate::console_log::ConsoleLog;
use crate::BusDevice;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use vm_superio::{Serial as Uart, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// How many console lines [`ConsoleTail`] keeps.
const TAIL_LINES: usize = 40;
/// Longest line kept; a guest printing without newlines cannot grow memory.
const MAX_LINE: usize = 4096;
const PANIC_PREFIX: &str = "Kernel panic - not syncing";

/// The last lines the guest printed, and its panic message if any.
#[derive(Default, Debug, Clone)]
pub struct ConsoleTail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    panic: Option<String>,
}

impl ConsoleTail {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.end_line(),
                b'\r' => {}
                _ if self.partial.len() < MAX_LINE => self.partial.push(b),
                _ => {}
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if self.panic.is_none() {
            if let Some(at) = line.find(PANIC_PREFIX) {
                self.panic = Some(line[at..].to_string());
            }
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last lines, oldest first, including an unfinished last line.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        out
    }

    /// The guest kernel's panic message, if it printed one.
    pub fn panic(&self) -> Option<&str> {
        self.panic.as_deref()
    }
}

/// Where console bytes go.
pub struct ConsoleSink {
    log: Option<ConsoleLog>,
    echo: bool,
    tail: Arc<Mutex<ConsoleTail>>,
}

impl ConsoleSink {
    pub fn new(log: Option<ConsoleLog>, echo: bool) -> Self {
        Self {
            log,
            echo,
            tail: Arc::default(),
        }
    }

    /// A handle on the tail that stays valid after the VM is gone.
    pub fn tail(&self) -> Arc<Mutex<ConsoleTail>> {
        self.tail.clone()
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = self.log.as_mut() {
            log.write(buf);
        }
        if self.echo {
            let _ = std::io::stderr().write_all(buf);
        }
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Raises the UART's interrupt line through an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// COM1.
pub struct Serial(Uart<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>);

impl Serial {
    pub const BASE: u16 = 0x3f8;
    pub const LEN: u16 = 8;
    pub const IRQ: u32 = 4;

    pub fn new(irq: EventFd, sink: ConsoleSink) -> Self {
        Self(Uart::new(IrqTrigger(irq), sink))
    }

    /// The UART's registers, for a snapshot. Without them a restored
    /// guest's driver would wait for interrupts it had enabled and we
    /// had forgotten.
    pub fn snapshot(&self) -> SerialSnapshot {
        let s = self.0.state();
        SerialSnapshot {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    }

    pub fn restored(
        irq: EventFd,
        sink: ConsoleSink,
        s: &SerialSnapshot,
    ) -> Result<Self, crate::virtio::persist::RestoreError> {
        let [baud_divisor_low, baud_divisor_high, interrupt_enable, interrupt_identification, line_control, line_status, modem_control, modem_status, scratch] =
            s.regs;
        let state = vm_superio::serial::SerialState {
            baud_divisor_low,
            baud_divisor_high,
            interrupt_enable,
            interrupt_identification,
            line_control,
            line_status,
            modem_control,
            modem_status,
            scratch,
            in_buffer: s.in_buffer.clone(),
        };
        Uart::from_state(&state, IrqTrigger(irq), vm_superio::serial::NoEvents, sink)
            .map(Self)
            .map_err(|e| crate::virtio::persist::RestoreError::Serial(format!("{e:?}")))
    }
}

/// The UART's registers in vm-superio's order, and its input buffer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    pub regs: [u8; 9],
    pub in_buffer: Vec<u8>,
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let [byte] = data {
            *byte = self.0.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let [byte] = data {
            // The only error is a failed interrupt trigger; the guest will
            // poll the line status register and carry on.
            let _ = self.0.write(offset as u8, *byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_the_panic() {
        let mut t = ConsoleTail::default();
        for i in 0..100 {
            t.push(format!("line {i}\r\n").as_bytes());
        }
        t.push(b"[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n");
        t.push(b"partial");
        let lines = t.lines();
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines.last().unwrap(), "partial");
        assert_eq!(
            t.panic(),
            Some("Kernel panic - not syncing: VFS: Unable to mount root fs")
        );
    }

    #[test]
    fn endless_line_is_bounded() {
        let mut t = ConsoleTail::default();
        t.push(&vec![b'x'; MAX_LINE * 3]);
        assert_eq!(t.lines()[0].len(), MAX_LINE);
    }
}
