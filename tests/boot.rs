//! Booting real guests: the default environment to guest-init and back,
//! and every way a boot can go wrong ending in a clear error, not a hang.

mod common;

use pyro::vmm::{Disk, Error, Vm, VmConfig, VmExit};
use pyro::workspace::{BootOptions, NoProgress, Pyro};
use std::time::{Duration, Instant};

#[test]
fn default_environment_boots_to_init_and_powers_off() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let dir = common::scratch();
    let opts = BootOptions {
        console_log: Some(dir.path().join("console.log")),
        ..BootOptions::default()
    };
    let check = Pyro::from_env()
        .boot_check(&opts, &NoProgress)
        .expect("boot");
    assert_eq!(check.environment, "debian:12");
    assert_eq!(check.exit, VmExit::PowerOff { status: 0 });
    assert!(check.guest_init_ms > 0.0, "guest clock at init: {check:?}");
    assert!(
        check.to_init_ms > check.guest_init_ms,
        "host time covers guest time: {check:?}"
    );
    assert!(check.total_ms >= check.to_init_ms);
    // A quiet kernel and a healthy guest-init print nothing; the power-off
    // marker ends the VM before the kernel's own reboot message.
    let console = std::fs::read_to_string(&check.console_log).expect("console log written");
    assert!(
        !console.contains("pyro-init:"),
        "guest-init logged a problem:\n{console}"
    );
    assert!(!console.contains("panic"), "console:\n{console}");
}

#[test]
fn two_vcpus_boot_too() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let mut config = VmConfig::new(common::kernel());
    config.vcpus = 2;
    config.mem_mib = 192;
    config.add_disk(Disk {
        path: common::rootfs("debian:12"),
        read_only: true,
        direct_only: false,
    });
    config.cmdline_extra.push("pyro.mode=poweroff".into());
    let mut vm = Vm::start(&config).expect("start");
    // The owner of a detached VM blocks until told: a vCPU that ends
    // calls the hook (here before any waiting on the VM).
    let (ended_tx, ended) = std::sync::mpsc::channel();
    vm.on_end(move || {
        let _ = ended_tx.send(());
    });
    assert_eq!(ended.recv_timeout(Duration::from_secs(180)), Ok(()));
    assert_eq!(
        vm.try_exit().expect("ended").unwrap(),
        VmExit::PowerOff { status: 0 }
    );
}

#[test]
fn missing_kernel_says_which_file_and_what_to_do() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let err = Vm::start(&VmConfig::new("/nonexistent/vmlinux"))
        .err()
        .expect("must fail");
    assert!(matches!(err, Error::KernelOpen { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/vmlinux") && msg.contains("pyro env pull"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_a_kernel_is_refused() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let dir = common::scratch();
    let bogus = dir.path().join("vmlinux");
    std::fs::write(&bogus, b"#!/bin/sh\necho not a kernel\n").unwrap();
    let err = Vm::start(&VmConfig::new(&bogus)).err().expect("must fail");
    assert!(matches!(err, Error::KernelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("ELF"), "{err}");
}

#[test]
fn kernel_panic_is_reported_with_the_panic_message() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    // No root disk: the kernel cannot mount root and panics.
    let mut config = VmConfig::new(common::kernel());
    config.cmdline_extra.push("root=/dev/vda".into());
    let mut vm = Vm::start(&config).expect("start");
    let err = vm
        .wait_for_init(Duration::from_secs(120))
        .expect_err("must panic");
    let msg = err.to_string();
    assert!(matches!(err, Error::Guest(_)), "{err:?}");
    assert!(
        msg.contains("guest kernel panic") && msg.contains("Unable to mount root fs"),
        "{msg}"
    );
    assert!(msg.contains("last guest console lines"), "{msg}");
}

#[test]
fn guest_that_never_starts_init_times_out_and_is_torn_down() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    // A PID 1 that blocks forever on the console and never signals.
    let mut config = VmConfig::new(common::kernel());
    config.add_disk(Disk {
        path: common::rootfs("debian:12"),
        read_only: true,
        direct_only: false,
    });
    config.cmdline_extra.push("init=/bin/cat".into());
    let mut vm = Vm::start(&config).expect("start");
    let started = Instant::now();
    let err = vm
        .wait_for_init(Duration::from_secs(20))
        .expect_err("must time out");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after"), "{err}");
    drop(vm); // joins the vCPU threads: must not hang
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_read_only_root_disk_is_never_written() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let root = common::rootfs("debian:12");
    let before = std::fs::metadata(&root).unwrap().modified().unwrap();
    let digest = |p: &std::path::Path| {
        use std::io::Read;
        let mut f = std::fs::File::open(p).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut sum = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break sum;
            }
            sum = buf[..n]
                .iter()
                .fold(sum, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
        }
    };
    let sum = digest(&root);
    let mut config = VmConfig::new(common::kernel());
    config.add_disk(Disk {
        path: root.clone(),
        read_only: true,
        direct_only: false,
    });
    config.cmdline_extra.push("pyro.mode=poweroff".into());
    let mut vm = Vm::start(&config).unwrap();
    vm.wait_for_init(Duration::from_secs(120)).unwrap();
    vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(
        std::fs::metadata(&root).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(digest(&root), sum);
}

#[test]
fn pvm_masks_follow_host_detection_and_emulation_failures_are_reported() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    // The same kernel boots unmasked on VMX/SVM. On a PVM host, booting it
    // as if the host were VMX must stop at the first instruction the
    // emulator lacks (xrstor, without `noxsave`), and say so precisely.
    let host = pyro::vmm::HostKind::detect();
    let mut config = VmConfig::new(common::kernel());
    config.host = pyro::vmm::HostKind::Vmx;
    config.add_disk(Disk {
        path: common::rootfs("debian:12"),
        read_only: true,
        direct_only: false,
    });
    config.cmdline_extra.push("pyro.mode=poweroff".into());
    assert!(!config.cmdline().render().unwrap().contains("pvm_native"));
    let result = Vm::start(&config).and_then(|mut vm| vm.wait_for_init(Duration::from_secs(120)));
    if host == pyro::vmm::HostKind::Pvm {
        let err = result.expect_err("an unmasked kernel cannot boot on PVM");
        let msg = err.to_string();
        assert!(
            msg.contains("KVM internal error") && msg.contains("instruction bytes"),
            "{msg}"
        );
        assert!(
            msg.contains("at rip 0xffffffff8"),
            "rip in the kernel: {msg}"
        );
    } else {
        result.expect("no masks needed on VMX/SVM");
    }
}
