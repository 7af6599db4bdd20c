//! `pyro-guest-init`: the guest side of pyro. Its binary, `pyro-init`
//! (built static), is PID 1 inside every pyro guest: it mounts the kernel
//! filesystems, sets up /workspace, tells the VMM when it started, serves
//! the RPC agent (exec, files, archives, patches, shells) over vsock, reaps
//! orphans, and powers the VM off.
//!
//! What the host and guest agree on lives in `pyro-proto`, and the patch
//! logic both sides use in `pyro-patch`: no host crate depends on this one.
//!
//! Start-up order matters for boot time: every syscall costs ~160 us and
//! every page fault milliseconds on PVM hosts, so this does the minimum
//! before telling the VMM it is up.

#![forbid(unsafe_code)]

mod init;

use pyro_proto::{cmdline, marker};

fn main() {
    // A shell's session helper, started by the agent: not PID 1.
    init::shell::run_session_if_asked();
    let started_us = init::clock::monotonic_us();
    let main_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        init::log(&format!(
            "panic in thread {}: {info}",
            thread.name().unwrap_or("unnamed")
        ));
        // PID 1's main thread mounts, then reaps orphans for as long as
        // the VM runs: if it unwound, PID 1 would exit and the kernel
        // panic with a less useful message, and nothing would reap. So
        // that one powers off, with a status the host reports as a crash.
        // Any other thread just ends: the agent answers the request whose
        // handler panicked with an error (`agent::isolated`) and serves
        // on; PID 1 and every other connection are untouched.
        if thread.id() == main_thread {
            init::power::power_off(101);
        }
    }));

    // The kernel has mounted devtmpfs already, so /dev/mem is there: tell
    // the VMM first, then do the rest.
    init::marker::send(marker::EVENT_INIT_STARTED, started_us);
    init::mounts::mount_kernel_filesystems();
    init::mounts::tune_writeback();
    // Needs /proc, /sys and /run; before the agent, so that every command
    // sees the network.
    init::net::configure();

    let args = init::cmdline::read();
    match args.get(cmdline::MODE_KEY).unwrap_or(cmdline::MODE_SERVE) {
        cmdline::MODE_POWEROFF => init::power::power_off(0),
        cmdline::MODE_SERVE => serve(&args),
        other => {
            init::log(&format!("unknown {}={other}; serving", cmdline::MODE_KEY));
            serve(&args)
        }
    }
}

/// Sets up /workspace, starts the agent and reaps on the main thread.
fn serve(args: &init::cmdline::Args) -> ! {
    // The system first: /workspace is mounted into the new root.
    match args.get(cmdline::SYSTEM_KEY) {
        None | Some(cmdline::SYSTEM_LATER) => {}
        Some(value) => match init::system::Upper::parse(value) {
            Some(upper) => {
                if let Err(e) = init::system::make_writable(upper) {
                    init::log(&format!("writable system: {e}"));
                }
            }
            None => init::log(&format!(
                "{}={value}: not tmpfs or /dev/vdX",
                cmdline::SYSTEM_KEY
            )),
        },
    }
    match args.get(cmdline::WORKSPACE_KEY) {
        Some(cmdline::WORKSPACE_LATER) => {}
        device => {
            if let Err(e) = init::mounts::mount_workspace(device) {
                init::log(&e);
            }
        }
    }
    if let Some(word) = args.get(cmdline::TEST_PANIC_KEY) {
        init::agent::arm_test_panic(word);
    }
    if args.get(cmdline::WORKSPACE_KEY).is_some() {
        // A workspace VM: the buffers of bulk writes, made now (1.4 s of
        // emulated page faults at this boot) so that the snapshots of it
        // hold them and no push after a restore pays for them. One-shot
        // VMs take no pushes.
        init::buffers::prefault();
    }
    match init::agent::listen() {
        Ok(listener) => {
            let spawned = std::thread::Builder::new()
                .name("agent".into())
                .spawn(move || init::agent::serve(listener));
            if let Err(e) = spawned {
                init::log(&format!("cannot start the agent thread: {e}"));
            }
        }
        Err(e) => init::log(&format!("cannot listen on vsock: {e}")),
    }
    init::reaper::reap_forever()
}
