//! Networking end to end, real guests against servers on this machine's
//! loopback only (names point at them with `--add-host`; nothing leaves
//! the host): policies, allowlists and DNS in one-shot runs; a
//! workspace's published port, policy changes, stop/start,
//! suspend/resume and delete; a service's port and HTTP probe; two VMs with the same guest addresses at
//! once.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::{
    CreateOptions, NetConfig, NetRules, NetworkPolicy, NoProgress, PortMapping, Pyro, RunOptions,
    RunResult, ServiceOptions, ServiceProbe, ServiceState, UpdateOptions, WorkspaceState,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A host server on 127.0.0.1 that answers every connection `pong` and
/// counts them (so a test can tell that nothing reached it).
struct HostServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl HostServer {
    fn start() -> HostServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\npong\n");
            }
        });
        HostServer { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A guest shell function: `probe HOST PORT LABEL` prints `LABEL=ok` if
/// an HTTP GET there answers `pong`, else `LABEL=refused`; and
/// `resolves NAME LABEL` prints whether the name resolves.
const PROBE: &str = r#"
probe() {
  if timeout 20 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null | grep -q pong
  then echo "$3=ok"; else echo "$3=refused"; fi
}
resolves() { if getent hosts "$1" >/dev/null; then echo "$2=yes"; else echo "$2=no"; fi; }
"#;

fn script(body: &str) -> Vec<String> {
    vec!["bash".into(), "-c".into(), format!("{PROBE}\n{body}")]
}

fn rules(policy: NetworkPolicy, allow: &[&str], add: &[&str]) -> NetRules {
    NetRules {
        policy,
        allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        add_hosts: add.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fn run(pyro: &Pyro, rules: NetRules, body: &str) -> RunResult {
    let opts = RunOptions {
        timeout: Duration::from_secs(120),
        network: NetConfig {
            rules,
            publish: Vec::new(),
        },
        ..RunOptions::default()
    };
    pyro.run(&opts, &script(body), &NoProgress, |_, _| {})
        .expect("run")
}

/// The two scenarios run one after the other: each already runs two
/// guests at once, and a third on two cores starves the guests' agents
/// past their handshake deadline on a slow host.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stdout(r: &RunResult) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn runs_follow_their_policy_allowlist_and_dns() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let server = HostServer::start();
    let p = server.port;

    // Off: no name resolves, nothing connects, nothing reaches the host.
    let off = run(
        &pyro,
        rules(NetworkPolicy::Off, &[], &[]),
        &format!("resolves api.test dns; probe 10.0.2.2 {p} gateway"),
    );
    assert_eq!(stdout(&off), "dns=no\ngateway=refused\n", "{off:?}");
    assert_eq!(server.hits(), 0);

    // Egress with an allowlist: the allowed name (pointed at the host's
    // loopback with --add-host) works; a name off the list is NXDOMAIN;
    // the loopback by address and a private address are refused, and so
    // is a public address off the list, all before leaving the host.
    let allowed = run(
        &pyro,
        rules(
            NetworkPolicy::Egress,
            &["api.test"],
            &["api.test:127.0.0.1", "other.test:127.0.0.1"],
        ),
        &format!(
            "resolves api.test api; resolves other.test other; probe api.test {p} byname; \
             probe 10.0.2.2 {p} gateway; probe 192.168.7.7 80 private; \
             probe 198.51.100.7 80 public"
        ),
    );
    assert_eq!(
        stdout(&allowed),
        "api=yes\nother=no\nbyname=ok\ngateway=refused\nprivate=refused\npublic=refused\n",
        "{allowed:?}"
    );
    assert_eq!(server.hits(), 1, "only the allowed connection got through");
    let refused: Vec<&str> = allowed
        .network_refusals
        .iter()
        .map(|r| r.target.as_str())
        .collect();
    for target in ["other.test", "192.168.7.7:80", "198.51.100.7:80"] {
        assert!(refused.contains(&target), "{target} not in {refused:?}");
    }

    // Egress without an allowlist still keeps loopback and private
    // ranges out, unless one is allowed explicitly by address.
    let open = run(
        &pyro,
        rules(NetworkPolicy::Egress, &[&format!("127.0.0.1:{p}")], &[]),
        &format!(
            "probe 10.0.2.2 {p} loopback; probe 10.0.2.2 1 otherport; probe 10.9.9.9 80 private"
        ),
    );
    assert_eq!(
        stdout(&open),
        "loopback=ok\notherport=refused\nprivate=refused\n",
        "{open:?}"
    );
    assert_eq!(server.hits(), 2);
}

/// Polls `127.0.0.1:port` until an HTTP GET answers (the guest's server
/// takes a few seconds to start on a slow host), returning the answer.
fn http_get(port: u16, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.contains("200") {
                return Some(out);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// Whether something listens on 127.0.0.1:`port`, and on nothing wider
/// (the kernel's table of listening sockets).
fn listens_on_loopback_only(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listening: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A")).then(|| f[1].to_string())
        })
        .filter(|local| local.ends_with(&format!(":{port:04X}")))
        .collect();
    !listening.is_empty() && listening.iter().all(|l| l.starts_with("0100007F:"))
}

fn host_port(pyro: &Pyro, id: &str) -> Option<u16> {
    pyro.workspace_port_list(id).unwrap().ports[0].host_port
}

fn exec(pyro: &Pyro, id: &str, body: &str) -> String {
    let r = pyro
        .workspace_exec(id, &script(body), Duration::from_secs(120), |_, _| {})
        .expect("exec");
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn a_workspace_publishes_a_port_changes_policy_and_keeps_its_network_across_starts() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let server = HostServer::start();
    let p = server.port;
    let allow_host = format!("127.0.0.1:{p}");
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                environment: "debian:12-build".into(),
                ttl_seconds: Some(1800),
                network: NetConfig {
                    rules: rules(NetworkPolicy::EgressPublishedPorts, &[&allow_host], &[]),
                    publish: vec![PortMapping {
                        host: None,
                        guest: 8000,
                    }],
                },
                ..CreateOptions::default()
            },
            &NoProgress,
        )
        .expect("create");
    let id = ws.record.workspace_id.clone();
    let cleanup = common::delete_on_drop(&pyro, &id);

    // A guest web server, published on the host's loopback only. (Python
    // takes 20-30 s to start on a PVM host: every import is emulated
    // kernel work.)
    exec(
        &pyro,
        &id,
        // The exec's process group is killed when it ends: wait until the
        // server has its own session before ending.
        "echo hello-from-guest > /workspace/hello.txt; cd /workspace; \
         setsid python3 -u -m http.server 8000 --bind 0.0.0.0 >/tmp/http.log 2>&1 < /dev/null & \
         pid=$!; read -r -a me < /proc/$$/stat; \
         while read -r -a it < /proc/$pid/stat && [ \"${it[5]}\" = \"${me[5]}\" ]; do sleep 0.2; done",
    );
    let port = host_port(&pyro, &id).expect("published while running");
    let got = http_get(port, Duration::from_secs(180)).unwrap_or_else(|| {
        let log = exec(
            &pyro,
            &id,
            "cat /tmp/http.log; cat /proc/net/tcp; grep -l http.server /proc/[0-9]*/cmdline",
        );
        panic!("the guest server does not answer on 127.0.0.1:{port}: {log}")
    });
    assert!(got.contains("hello-from-guest"), "{got}");
    assert!(listens_on_loopback_only(port), "port {port}");
    let status = pyro.workspace_status(&id).unwrap();
    let net = status.network_status.expect("live network status");
    assert_eq!(net.ports.len(), 1);
    assert_eq!(net.rules.policy, NetworkPolicy::EgressPublishedPorts);

    eprintln!("step: Egress to the explicitly allow");
    // Egress to the explicitly allowed host port, while a one-shot run
    // with the very same guest addresses does the same at once.
    let parallel = std::thread::scope(|s| {
        let other = s.spawn(|| {
            run(
                &pyro,
                rules(NetworkPolicy::Egress, &[&allow_host], &[]),
                &format!("probe 10.0.2.2 {p} fromrun"),
            )
        });
        let here = exec(&pyro, &id, &format!("probe 10.0.2.2 {p} fromws"));
        (here, other.join().unwrap())
    });
    assert_eq!(parallel.0, "fromws=ok\n");
    assert_eq!(stdout(&parallel.1), "fromrun=ok\n");

    eprintln!("step: A policy change applies");
    // A policy change applies to the next connection.
    pyro.workspace_update(
        &id,
        &UpdateOptions {
            allow_hosts: Some(Vec::new()),
            ..UpdateOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        exec(&pyro, &id, &format!("probe 10.0.2.2 {p} after")),
        "after=refused\n"
    );
    let refusals = pyro.workspace_network_refusals(&id).unwrap();
    assert!(
        refusals.iter().any(|r| r.target == format!("10.0.2.2:{p}")
            || r.target == format!("127.0.0.1:{p}")
            || r.reason.contains("127.0.0.1")),
        "{refusals:?}"
    );
    pyro.workspace_update(
        &id,
        &UpdateOptions {
            allow_hosts: Some(vec![allow_host.parse().unwrap()]),
            ..UpdateOptions::default()
        },
    )
    .unwrap();

    eprintln!("step: Suspend and resume:");
    // Suspend and resume: the same machine (its server still runs), the
    // port published again, egress working.
    pyro.workspace_suspend(&id).unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port went with the VM"
    );
    let resumed = pyro.workspace_start(&id, &NoProgress).unwrap();
    assert_eq!(resumed.state, WorkspaceState::Running);
    let port = host_port(&pyro, &id).expect("published after resume");
    assert!(
        http_get(port, Duration::from_secs(60)).is_some(),
        "resumed server"
    );
    assert_eq!(
        exec(&pyro, &id, &format!("probe 10.0.2.2 {p} resumed")),
        "resumed=ok\n"
    );

    eprintln!("step: Stop and start:");
    // Stop and start: a fresh machine from the warm snapshot, its
    // network as recorded.
    pyro.workspace_stop(&id).unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    pyro.workspace_start(&id, &NoProgress).unwrap();
    assert_eq!(
        exec(&pyro, &id, &format!("probe 10.0.2.2 {p} restarted")),
        "restarted=ok\n"
    );
    let port = host_port(&pyro, &id).expect("published after start");
    assert!(listens_on_loopback_only(port));

    eprintln!("step: A service with an HTTP probe and a port of its own:");
    // A service's port lives as long as the service: published once the
    // HTTP probe (in the guest) got an answer, still there after its logs
    // were read (the reference product's `service logs` tore it down),
    // gone after `service stop` (the reference left it running).
    let web = pyro
        .workspace_service_start(
            &id,
            "web",
            &ServiceOptions {
                cwd: Some("/workspace".into()),
                ready: Some(ServiceProbe::Http {
                    url: "http://127.0.0.1:8001/hello.txt".into(),
                }),
                ready_timeout: Duration::from_secs(180),
                publish: vec![PortMapping {
                    host: None,
                    guest: 8001,
                }],
                ..ServiceOptions::new("exec python3 -u -m http.server 8001 --bind 0.0.0.0")
            },
        )
        .expect("service start");
    assert_eq!(web.state, ServiceState::Ready, "{web:?}");
    let service_port = web.ports[0].host_port.expect("published once ready");
    assert!(listens_on_loopback_only(service_port));
    let got = http_get(service_port, Duration::from_secs(30)).expect("the service answers");
    assert!(got.contains("hello-from-guest"), "{got}");
    let logs = pyro.workspace_service_logs(&id, "web", None).unwrap();
    assert!(logs.stderr.contains("GET /hello.txt"), "{logs:?}");
    assert!(
        http_get(service_port, Duration::from_secs(30)).is_some(),
        "logs leave the port be"
    );
    let stopped = pyro.workspace_service_stop(&id, "web", None).unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    assert_eq!(stopped.ports[0].host_port, None);
    assert!(TcpStream::connect(("127.0.0.1", service_port)).is_err());
    assert_eq!(
        pyro.workspace_port_list(&id).unwrap().ports.len(),
        1,
        "the record's own port stays"
    );

    eprintln!("step: Unpublish:");
    // Unpublish: nothing listens there any more. Publish again, then
    // delete: the port goes with the workspace.
    pyro.workspace_port_unpublish(&id, 8000).unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let again = pyro
        .workspace_port_publish(
            &id,
            PortMapping {
                host: None,
                guest: 8000,
            },
        )
        .unwrap();
    let port = again.host_port.expect("bound");
    assert!(listens_on_loopback_only(port));
    drop(cleanup);
    assert!(pyro.workspace_status(&id).is_err(), "deleted");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
