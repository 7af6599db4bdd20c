//! Boots a kernel by hand: `boot KERNEL [ROOTFS] [-- CMDLINE WORDS...]`.
//! Prints boot times and how the guest ended; the console goes to stderr.

use pyro_vmm::{Disk, Vm, VmConfig};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (paths, extra) = args.split_at(split);
    let mut config = VmConfig::new(&paths[0]);
    if let Some(root) = paths.get(1) {
        config.add_disk(Disk {
            path: root.into(),
            read_only: true,
            direct_only: false,
        });
    }
    config.cmdline_extra = extra.iter().skip(1).cloned().collect();
    config.serial_echo = std::env::var_os("ECHO").is_some();
    if let Ok(mem) = std::env::var("MEM_MIB") {
        config.mem_mib = mem.parse().unwrap();
    }
    let mut vm = match Vm::start(&config) {
        Ok(vm) => vm,
        Err(e) => return eprintln!("start: {e}"),
    };
    eprintln!("cmdline: {}", vm.cmdline());
    match vm.wait_for_init(Duration::from_secs(60)) {
        Ok(t) => println!(
            "init: host {:.0} ms, guest {:.0} ms",
            t.to_init_ms, t.guest_init_ms
        ),
        Err(e) => return println!("boot failed: {e}"),
    }
    match vm.wait_for_exit(Duration::from_secs(30)) {
        Ok(exit) => println!("exit: {exit:?}"),
        Err(e) => println!("exit failed: {e}"),
    }
}
