//! `pyro workspace fork` through the real binary and real guests: one
//! source with a counting process, a service and a checkpoint, forked
//! four ways while it runs; then forks of a suspended child, a stopped
//! child and a child with a secret; and bad input. One scenario, one
//! source: each fork restores in about a second, a fresh source would
//! cost a create.

mod common;

use common::home::Home;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// A guest server that greets each client with "hi" (perl-base is in
/// every image).
const SERVER: &str = "exec perl -MIO::Socket::INET -e '$SIG{CHLD} = \"IGNORE\"; \
    $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, ReuseAddr => 1) or die $!; \
    while ($c = $s->accept) { print $c \"hi\\n\"; close $c }'";

/// The counter's value, the hostname, 16 random bytes, and the counter
/// again 1.2 s later: one process spawn (perl), the rest shell builtins
/// (a spawn is ~0.6 s of emulated guest-kernel work).
const IDENTITY: &str =
    "read a < /tmp/count; echo $a; read h < /proc/sys/kernel/hostname; echo $h; \
    perl -e 'open(R, \"/dev/urandom\") or die; read(R, $b, 16); print unpack(\"H*\", $b), \"\\n\"; \
    select(undef, undef, undef, 1.2)'; read b < /tmp/count; echo $b";

struct Identity {
    count: u64,
    hostname: String,
    random: String,
    count_later: u64,
}

fn identity(home: &Home, id: &str) -> Identity {
    let out = home.sh(id, IDENTITY);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    Identity {
        count: lines[0].trim().parse().expect(&out),
        hostname: lines[1].to_string(),
        random: lines[2].trim().to_string(),
        count_later: lines[3].trim().parse().expect(&out),
    }
}

fn ids(forked: &Value) -> Vec<String> {
    forked["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["workspace_id"].as_str().unwrap().to_string())
        .collect()
}

/// The greeting of the guest server behind host port `port`.
fn greeting(port: u16) -> String {
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line
}

#[test]
fn a_fork_copies_a_running_workspace_processes_included_and_children_stand_alone() {
    if !pyro_workspace::testing::guests_available() {
        return;
    }
    let home = Home::new();
    let source = home.create(&[
        "--network-policy",
        "published-ports",
        "--publish",
        "8000",
        "--label",
        "team=a",
    ]);
    // A counter in its own session (the exec's end kills its process
    // group: wait until it has left it), a service, a file, a checkpoint.
    // The counter is one perl process writing to /tmp (guest memory),
    // twice a second: a shell loop would spawn `sleep` each time (~0.6 s
    // of emulated guest-kernel work a spawn), and writes to /workspace
    // cost its ext4 journal (either made a guest take half a core, and
    // five of them starved the test). Written aside and renamed, so a
    // reader never sees it empty.
    home.sh(
        &source,
        "echo base > /workspace/base.txt; \
         setsid perl -e 'for ($i = 1; ; $i++) { open(F, \">/tmp/.count\") or die; \
         print F \"$i\\n\"; close F; rename(\"/tmp/.count\", \"/tmp/count\"); \
         select(undef, undef, undef, 0.5) }' \
         </dev/null >/dev/null 2>&1 & pid=$!; \
         while [ \"$(cut -d' ' -f6 /proc/$pid/stat)\" != $pid ]; do sleep 0.05; done",
    );
    home.ok(&[
        "workspace",
        "service",
        "start",
        &source,
        "hello",
        "--ready-tcp",
        "8000",
        "--ready-timeout-seconds",
        "120",
        "--",
        SERVER,
    ]);
    home.ok(&["workspace", "snapshot", "create", &source, "cp1"]);
    home.sh(&source, "echo after-cp1 > /workspace/base.txt");
    // Once before the fork, so the programs it runs are in the page
    // cache the children inherit: each child reading them from its disk
    // through its own emulated guest kernel took ~15 s.
    let before = identity(&home, &source);
    assert!(before.count_later > before.count, "the counter runs");
    let at_fork = before.count_later;

    // Four at once, from the running source.
    let forked = home.json(&[
        "workspace",
        "fork",
        &source,
        "--count",
        "4",
        "--name",
        "try",
        "--label",
        "attempt=x",
    ]);
    assert_eq!(forked["source_id"], source.as_str(), "{forked}");
    assert_eq!(forked["source_state"], "running", "{forked}");
    assert!(forked["source_paused_ms"].as_f64().is_some(), "{forked}");
    let children = ids(&forked);
    assert_eq!(children.len(), 4, "{forked}");
    for (i, child) in forked["children"].as_array().unwrap().iter().enumerate() {
        assert_eq!(child["name"], format!("try-{}", i + 1), "{child}");
        assert_eq!(child["state"], "running", "{child}");
        assert_eq!(child["last_start"], "forked", "{child}");
        assert_eq!(child["forked_from"], source.as_str(), "{child}");
        assert_eq!(child["labels"]["team"], "a", "{child}");
        assert_eq!(child["labels"]["attempt"], "x", "{child}");
        assert_eq!(child["network"]["publish"], Value::Array(vec![]), "{child}");
    }

    // Each child: the counter runs on from its fork-time value, its own
    // hostname and random bytes; the source runs on too.
    let mut hostnames = BTreeSet::new();
    let mut randoms = BTreeSet::new();
    let all: Vec<&String> = children.iter().chain([&source]).collect();
    let seen_all: Vec<Identity> = std::thread::scope(|s| {
        let checks: Vec<_> = all
            .iter()
            .map(|id| s.spawn(|| identity(&home, id)))
            .collect();
        checks.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (id, seen) in all.iter().zip(seen_all) {
        assert!(seen.count >= at_fork, "{id}: {} < {at_fork}", seen.count);
        assert!(seen.count_later > seen.count, "{id}: the counter stopped");
        hostnames.insert(seen.hostname);
        randoms.insert(seen.random);
    }
    assert_eq!(hostnames.len(), 5, "hostnames differ: {hostnames:?}");
    assert_eq!(randoms.len(), 5, "random bytes differ: {randoms:?}");

    // The service runs in a child, answering once its port is published
    // again (ports are not copied).
    let services = home.json(&["workspace", "service", "list", &children[0]]);
    assert_eq!(services["services"][0]["name"], "hello", "{services}");
    assert_eq!(services["services"][0]["state"], "ready", "{services}");
    let published = home.json(&["workspace", "port", "publish", &children[0], "8000"]);
    let port = published["host_port"].as_u64().expect("a host port") as u16;
    assert_eq!(greeting(port), "hi\n");

    // Writes after the fork stay where they were made.
    home.sh(&children[0], "echo mine > /workspace/mine.txt");
    for other in [&source, &children[1]] {
        assert_eq!(
            home.sh(other, "cat /workspace/mine.txt 2>/dev/null || echo absent"),
            "absent\n"
        );
    }
    // Checkpoints came along: a child resets to one.
    home.ok(&["workspace", "reset", &children[1], "--snapshot", "cp1"]);
    assert_eq!(home.read(&children[1], "base.txt"), "base\n");
    assert_eq!(home.read(&source, "base.txt"), "after-cp1\n");

    // The source can go: children do not depend on it.
    home.ok(&["workspace", "delete", &source]);
    let seen = identity(&home, &children[2]);
    assert!(seen.count_later > seen.count, "the counter stopped");

    // A suspended child forks from its kept memory and stays suspended.
    home.ok(&["workspace", "stop", &children[2], "--keep-memory"]);
    let from_kept = home.json(&["workspace", "fork", &children[2]]);
    assert_eq!(from_kept["source_state"], "suspended", "{from_kept}");
    assert!(from_kept["source_paused_ms"].is_null(), "{from_kept}");
    let grandchild = &ids(&from_kept)[0];
    let seen = identity(&home, grandchild);
    assert!(
        seen.count_later > seen.count,
        "the counter runs in the copy"
    );
    assert_eq!(
        home.json(&["workspace", "status", &children[2]])["state"],
        "suspended"
    );

    // A stopped child forks from its disks alone: a fresh machine.
    home.ok(&["workspace", "stop", &children[3]]);
    let from_disk = home.json(&["workspace", "fork", &children[3]]);
    assert_eq!(from_disk["source_state"], "stopped", "{from_disk}");
    let fresh = &ids(&from_disk)[0];
    assert_eq!(
        home.json(&["workspace", "status", fresh])["last_start"],
        "warm"
    );
    assert_eq!(home.read(fresh, "base.txt"), "after-cp1\n");
    assert_eq!(
        home.sh(fresh, "cat /tmp/count 2>/dev/null || echo none"),
        "none\n",
        "a fresh machine: no counter"
    );

    // Secrets are copied.
    home.ok(&[
        "workspace",
        "secret",
        "set",
        &children[0],
        "TOKEN",
        "--value",
        "s3cret",
    ]);
    let with_secret = ids(&home.json(&["workspace", "fork", &children[0]]))[0].clone();
    assert_eq!(
        home.ok(&[
            "workspace",
            "exec",
            &with_secret,
            "--secret-env",
            "TOKEN",
            "--",
            "sh",
            "-c",
            "[ \"$TOKEN\" = s3cret ] && echo same",
        ]),
        "same\n"
    );

    // Bad input changes nothing.
    let before = home.json(&["workspace", "list"]).as_array().unwrap().len();
    for (args, code, kind) in [
        (vec!["--count", "0"], 2, "invalid_argument"),
        (vec!["--count", "17"], 2, "invalid_argument"),
        (vec!["--name", "try-1"], 1, "conflict"),
        (vec!["--name", "no/slash"], 2, "invalid_argument"),
        (vec!["--label", "novalue"], 2, "invalid_argument"),
    ] {
        let mut all = vec!["workspace", "fork", &children[0]];
        all.extend(args.iter());
        let (got, msg) = home.fails(code, &all);
        assert_eq!(got, kind, "{args:?}: {msg}");
    }
    let (kind, msg) = home.fails(1, &["workspace", "fork", "0123456789ab"]);
    assert_eq!(kind, "not_found", "{msg}");
    // A fork that fails midway (its second child's name is taken, after
    // the first child was made) leaves no child.
    home.ok(&["workspace", "update", fresh, "--name", "half-2"]);
    let half = [
        "workspace",
        "fork",
        &children[0],
        "--count",
        "2",
        "--name",
        "half",
    ];
    let dirs = std::fs::read_dir(home.path("data/pyro/workspaces"))
        .unwrap()
        .count();
    let (kind, msg) = home.fails(1, &half);
    assert_eq!(kind, "conflict", "{msg}");
    assert_eq!(
        home.json(&["workspace", "list"]).as_array().unwrap().len(),
        before,
        "nothing made"
    );
    assert_eq!(
        std::fs::read_dir(home.path("data/pyro/workspaces"))
            .unwrap()
            .count(),
        dirs,
        "no directory left"
    );
}
