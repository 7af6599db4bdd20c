//! Attaching virtio-mmio devices: a page of MMIO, an irqfd, one ioeventfd
//! per queue, a subscriber on the event thread, and the kernel
//! command-line entry that announces the device.

use crate::error::Error;
use crate::kernel_cmdline::KernelCmdline;
use crate::layout::*;
use crate::memory::GuestMem;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{IoEventAddress, VmFd};
use pyro_devices::virtio::mmio::{MmioTransport, R_QUEUE_NOTIFY};
use pyro_devices::virtio::{Interrupt, VirtioDevice};
use pyro_devices::Bus;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

/// Places virtio devices one page apart from the start of the MMIO gap.
pub struct VirtioSlots<'a> {
    pub vm: &'a VmFd,
    pub mem: &'a GuestMem,
    pub mmio: &'a mut Bus,
    pub events: &'a mut EventManager<Subscriber>,
    pub cmdline: &'a mut KernelCmdline,
    pub next: u32,
    /// Every transport attached, in slot order (snapshots walk them).
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
}

impl VirtioSlots<'_> {
    /// Attaches a device in the next slot, with its event subscriber
    /// (its `event_handler`) built from the queues' kick eventfds.
    pub fn attach(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        subscriber: impl FnOnce(Vec<EventFd>) -> Subscriber,
    ) -> Result<(), Error> {
        let irq = VIRTIO_FIRST_IRQ + self.next;
        if irq > VIRTIO_LAST_IRQ {
            return Err(Error::Config(format!(
                "too many devices: at most {} virtio devices",
                VIRTIO_LAST_IRQ - VIRTIO_FIRST_IRQ + 1
            )));
        }
        let base = VIRTIO_MMIO_BASE + u64::from(self.next) * VIRTIO_MMIO_SIZE;
        let kvm = |op| move |source| Error::Kvm { op, source };
        let eventfd =
            || EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Config(format!("eventfd: {e}")));

        let irqfd = eventfd()?;
        self.vm
            .register_irqfd(&irqfd, irq)
            .map_err(kvm("KVM_IRQFD"))?;
        let queues = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue_max_sizes()
            .len();
        let mut kicks = Vec::with_capacity(queues);
        for index in 0..queues {
            let kick = eventfd()?;
            self.vm
                .register_ioevent(
                    &kick,
                    &IoEventAddress::Mmio(base + R_QUEUE_NOTIFY),
                    index as u32,
                )
                .map_err(kvm("KVM_IOEVENTFD"))?;
            kicks.push(kick);
        }
        let transport = MmioTransport::new(device, self.mem.clone(), Interrupt::new(irqfd));
        let transport = Arc::new(Mutex::new(transport));
        self.mmio
            .insert(base, VIRTIO_MMIO_SIZE, transport.clone())
            .map_err(|e| Error::Config(e.to_string()))?;
        self.transports.push(transport);
        self.events.add_subscriber(subscriber(kicks));
        self.cmdline
            .push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
        self.next += 1;
        Ok(())
    }
}
