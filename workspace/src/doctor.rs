//! `pyro doctor`: can this host run pyro VMs, and what is built.

use crate::{BootCheck, BootOptions, EnvSummary, Progress, Pyro};
use pyro_vmm::HostKind;
use serde::Serialize;
use std::path::PathBuf;

/// `/dev/kvm` as this process sees it.
#[derive(Debug, Clone, Serialize)]
pub struct KvmStatus {
    pub path: String,
    pub exists: bool,
    pub readable: bool,
    pub writable: bool,
    /// KVM_GET_API_VERSION, when /dev/kvm could be opened.
    pub api_version: Option<i32>,
}

/// The built guest kernel, if any.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    pub installed: bool,
    pub path: Option<PathBuf>,
    pub source_version: Option<String>,
}

impl KernelStatus {
    fn of(kernel: Option<pyro_images::Kernel>) -> Self {
        KernelStatus {
            installed: kernel.is_some(),
            path: kernel.as_ref().map(|k| k.path.clone()),
            source_version: kernel.map(|k| k.manifest.source_version),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// No issues found.
    pub ok: bool,
    pub platform: String,
    pub kvm: KvmStatus,
    /// pvm, vmx, svm or unknown.
    pub host: HostKind,
    pub host_note: String,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    /// The uniprocessor kernel (1-vCPU VMs).
    pub kernel: KernelStatus,
    /// The SMP kernel (VMs with more vCPUs), built on first use.
    pub smp_kernel: KernelStatus,
    pub environments: Vec<EnvSummary>,
    /// Present when a boot was asked for and succeeded.
    pub boot: Option<BootCheck>,
    /// Whether VMs can have a network here.
    pub network: NetworkCheck,
    /// How a VM's threads are confined here (`pyro_vmm::sandbox`).
    pub sandbox: SandboxCheck,
    pub issues: Vec<String>,
}

/// The VMM's confinement on this host: what is in force for every VM
/// thread, and what is not used.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxCheck {
    /// `enforce`, `log` or `off` (`PYRO_VMM_SECCOMP`); `invalid` with an
    /// issue when the variable holds something else.
    pub mode: String,
    /// The kernel filters system calls with the actions the mode needs.
    pub seccomp: bool,
    /// Each thread kind and how many system calls its filter allows.
    pub threads: Vec<SandboxThread>,
    /// Capabilities: dropped on each VM thread (the control thread keeps
    /// CAP_NET_BIND_SERVICE), when filters are on.
    pub capabilities_dropped: bool,
    /// `PR_SET_NO_NEW_PRIVS` on each VM thread, when filters are on.
    pub no_new_privs: bool,
    /// Landlock's ABI version if the kernel has it: then each VM thread
    /// may touch files only where its kind needs to at run time.
    pub landlock_abi: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SandboxThread {
    pub thread: String,
    pub allowed_calls: usize,
}

fn sandbox_check(issues: &mut Vec<String>) -> SandboxCheck {
    use pyro_vmm::sandbox::{Mode, MODE_ENV};
    let r = pyro_vmm::sandbox::report();
    let actions = r.seccomp_actions.clone().unwrap_or_default();
    let has = |a: &str| actions.split_whitespace().any(|x| x == a);
    let (mode, needed) = match &r.mode {
        Ok(Mode::Enforce) => ("enforce", Some("trap")),
        Ok(Mode::Log) => ("log", Some("log")),
        Ok(Mode::Off) => ("off", None),
        Err(e) => {
            issues.push(e.clone());
            ("invalid", None)
        }
    };
    let seccomp = needed.is_some_and(has);
    if let Some(action) = needed.filter(|a| !has(a)) {
        issues.push(format!(
            "this kernel's seccomp lacks the {action} action (actions: {actions:?}): \
             VMs cannot start confined; {MODE_ENV}=off starts them without a sandbox"
        ));
    }
    let on = seccomp;
    let detail = match (mode, r.landlock_abi) {
        ("off", _) => format!("{MODE_ENV}=off: VM threads run unconfined"),
        (_, Some(abi)) => format!(
            "every VM thread under its own seccomp filter, capabilities dropped, no new \
             privileges, files only where the thread needs them (Landlock ABI {abi}); \
             no namespaces"
        ),
        (_, None) => "every VM thread under its own seccomp filter, capabilities dropped, no \
                      new privileges; file access NOT restricted (no Landlock on this kernel); \
                      no namespaces"
            .into(),
    };
    SandboxCheck {
        mode: mode.into(),
        seccomp,
        threads: r
            .allowed_calls
            .iter()
            .map(|(thread, n)| SandboxThread {
                thread: thread.to_string(),
                allowed_calls: *n,
            })
            .collect(),
        capabilities_dropped: on,
        no_new_privs: on,
        landlock_abi: r.landlock_abi,
        detail,
    }
}

/// The network check: the VMM's user-space stack on this host (always),
/// and a guest's connection through it (with `--boot`).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkCheck {
    /// A stack could be made and a port published on 127.0.0.1.
    pub host_stack: bool,
    /// With `--boot`: a guest (policy egress, the test server allowed
    /// explicitly) connected to a server on this host's loopback.
    pub guest_connect: Option<bool>,
    /// That run's command time.
    pub guest_connect_ms: Option<u64>,
    pub detail: String,
}

impl Pyro {
    /// Checks the host and the cache; with `boot`, also builds what is
    /// missing and boots an environment end to end.
    pub fn doctor(&self, boot: Option<&BootOptions>, progress: &dyn Progress) -> DoctorReport {
        let mut issues = Vec::new();
        let kvm = kvm_status(&mut issues);
        let host = HostKind::detect();
        let kernel = self.images().installed_kernel();
        let smp_kernel = self
            .images()
            .installed_kernel_variant(pyro_images::KernelVariant::Smp);
        let mut report = DoctorReport {
            ok: false,
            platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            kvm,
            host,
            host_note: host_note(host).to_string(),
            cache_dir: self.paths().cache.clone(),
            data_dir: self.paths().data.clone(),
            kernel: KernelStatus::of(kernel),
            smp_kernel: KernelStatus::of(smp_kernel),
            environments: self.env_list(),
            boot: None,
            network: host_network(&mut issues),
            sandbox: sandbox_check(&mut issues),
            issues: Vec::new(),
        };
        if std::env::consts::ARCH != "x86_64" {
            issues.push(format!(
                "pyro runs x86_64 guests on x86_64 hosts; this is {}",
                std::env::consts::ARCH
            ));
        }
        if let Some(opts) = boot {
            if report.kvm.api_version.is_some() {
                match self.boot_check(opts, progress) {
                    Ok(check) => report.boot = Some(check),
                    Err(e) => issues.push(format!("boot of {} failed: {e}", opts.environment)),
                }
                if report.boot.is_some() && report.network.host_stack {
                    self.guest_network(opts, &mut report.network, &mut issues, progress);
                }
            } else {
                issues.push("boot skipped: KVM is not usable".into());
            }
        }
        report.ok = issues.is_empty();
        report.issues = issues;
        report
    }
}

fn kvm_status(issues: &mut Vec<String>) -> KvmStatus {
    let path = "/dev/kvm";
    let exists = std::path::Path::new(path).exists();
    let readable = std::fs::File::open(path).is_ok();
    let writable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_ok();
    let api_version = match pyro_vmm::kvm_api_version() {
        Ok(v) => Some(v),
        Err(e) => {
            issues.push(if exists {
                format!("{path} is not usable: {e}")
            } else {
                format!("{path} does not exist: enable virtualization (VT-x/AMD-V) and load kvm_intel or kvm_amd")
            });
            None
        }
    };
    KvmStatus {
        path: path.into(),
        exists,
        readable,
        writable,
        api_version,
    }
}

fn host_note(host: HostKind) -> &'static str {
    match host {
        HostKind::Pvm => "PVM (kvm_pvm): guest kernel code is emulated; the VMM adds the PVM kernel command-line masks",
        HostKind::Vmx => "Intel VT-x: hardware virtualization, no masks needed",
        HostKind::Svm => "AMD-V: hardware virtualization, no masks needed",
        HostKind::Unknown => "unknown KVM module: booting without PVM masks",
    }
}

/// Makes a VM's network stack (as a VMM does) with a port published on
/// 127.0.0.1, and connects to that port.
fn host_network(issues: &mut Vec<String>) -> NetworkCheck {
    use pyro_vmm::net::policy::{NetRules, NetworkPolicy, PortMapping};
    use pyro_vmm::net::stack::Stack;
    let config = pyro_vmm::NetConfig {
        rules: NetRules {
            policy: NetworkPolicy::PublishedPorts,
            ..NetRules::default()
        },
        publish: vec![PortMapping {
            host: None,
            guest: 80,
        }],
    };
    let checked = Stack::new(&config)
        .map_err(|e| e.to_string())
        .and_then(|stack| {
            let port = stack.control().status().ports[0].host;
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(|_| port)
                .map_err(|e| format!("connect to the published port 127.0.0.1:{port}: {e}"))
        });
    match checked {
        Ok(port) => NetworkCheck {
            host_stack: true,
            guest_connect: None,
            guest_connect_ms: None,
            detail: format!("user-space stack ready (a test port listened on 127.0.0.1:{port})"),
        },
        Err(e) => {
            issues.push(format!("VM networking is not available: {e}"));
            NetworkCheck {
                host_stack: false,
                guest_connect: None,
                guest_connect_ms: None,
                detail: e,
            }
        }
    }
}

impl Pyro {
    /// A warm run of `opts.environment` connecting to a server on this
    /// host's loopback (allowed explicitly, so nothing leaves the host).
    fn guest_network(
        &self,
        opts: &BootOptions,
        check: &mut NetworkCheck,
        issues: &mut Vec<String>,
        progress: &dyn Progress,
    ) {
        use pyro_vmm::net::policy::{NetRules, NetworkPolicy};
        use std::io::{Read, Write};
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => {
                issues.push(format!("network check: no loopback listener: {e}"));
                return;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        std::thread::spawn(move || {
            if let Some(Ok(mut conn)) = listener.incoming().next() {
                let mut buf = [0u8; 64];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"pyro-doctor\n");
            }
        });
        let run = crate::RunOptions {
            environment: opts.environment.clone(),
            mem_mib: opts.mem_mib,
            vcpus: opts.vcpus,
            timeout: std::time::Duration::from_secs(60),
            network: pyro_vmm::NetConfig {
                rules: NetRules {
                    policy: NetworkPolicy::Egress,
                    allow: format!("127.0.0.1:{port}").parse().into_iter().collect(),
                    add_hosts: Vec::new(),
                },
                publish: Vec::new(),
            },
            ..crate::RunOptions::default()
        };
        let script = format!(
            "exec 3<>/dev/tcp/{}/{port} && echo hi >&3 && read -r line <&3 && echo \"$line\"",
            std::net::Ipv4Addr::from(pyro_proto::net::GATEWAY_IP)
        );
        let argv = ["bash".to_string(), "-c".into(), script];
        match self.run(&run, &argv, progress, |_, _| {}) {
            Ok(r) if String::from_utf8_lossy(&r.stdout).trim() == "pyro-doctor" => {
                check.guest_connect = Some(true);
                check.guest_connect_ms = Some(r.timings.exec_ms);
                check.detail = format!(
                    "a guest connected to 127.0.0.1:{port} through the VMM's stack in {} ms",
                    r.timings.exec_ms
                );
            }
            Ok(r) => {
                check.guest_connect = Some(false);
                issues.push(format!(
                    "network check: the guest could not reach the host's test server: {}",
                    String::from_utf8_lossy(&r.stderr).trim()
                ));
            }
            Err(e) => {
                check.guest_connect = Some(false);
                issues.push(format!("network check: the run failed: {e}"));
            }
        }
    }
}
