//! Secrets end to end in a real guest (docs/secrets.md), the issue's
//! acceptance test: a workspace created with a literal secret and one
//! from a file; their values reach commands only through --secret-env
//! and the guest's /run/pyro-secrets (tmpfs, 0600); a value printed by
//! a command (split across output chunks too), echoed by a shell (read
//! in pieces), written to a service's log, spelled in a command line or
//! a service's command, or named in an error comes back [REDACTED]; a
//! stop and start installs them again; kept memory is refused; set
//! rotates and unset removes. Then the whole data dir (records, history,
//! logs, disk images, checkpoints) is searched for the values: only the
//! host store (0600) holds them.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::secrets::Secret;
use pyro::workspace::{
    CreateOptions, ExecOptions, NoProgress, Pyro, SecretSource, ServiceOptions, ServiceState,
    ShellOptions, ShellReadOptions,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN: &str = "pyro-s3cret-alpha-7731";
const KEY: &str = "pyro-keyfile-beta-0042";
const ROTATED: &str = "pyro-rotated-gamma-5150";
const REDACTED: &str = "[REDACTED]";

fn bash(script: &str) -> Vec<String> {
    vec!["/bin/bash".into(), "-c".into(), script.into()]
}

/// Runs `script` with `secret_env`; the streamed output (as the caller
/// saw it) and the record.
fn exec(
    pyro: &Pyro,
    id: &str,
    script: &str,
    secret_env: &[(&str, &str)],
) -> (String, pyro::workspace::CommandRecord) {
    let opts = ExecOptions {
        secret_env: secret_env
            .iter()
            .map(|(s, v)| (s.to_string(), v.to_string()))
            .collect(),
        ..ExecOptions::new(&bash(script), Duration::from_secs(120))
    };
    let mut streamed = Vec::new();
    let r = pyro
        .workspace_exec_with(id, &opts, &pyro::workspace::Cancel::never(), |_, b| {
            streamed.extend_from_slice(b)
        })
        .expect("exec");
    assert_eq!(r.exit_code, Some(0), "{script}: {r:?}");
    (String::from_utf8_lossy(&streamed).into_owned(), r)
}

fn assert_clean(what: &str, text: &str) {
    for value in [TOKEN, KEY, ROTATED] {
        assert!(!text.contains(value), "{what} shows a secret: {text}");
    }
}

#[test]
fn secrets_reach_commands_and_never_come_back() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let key_file = data.path().join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                ttl_seconds: Some(1800),
                secrets: vec![
                    (Secret::new("TOKEN", TOKEN).unwrap(), SecretSource::Literal),
                    (
                        pyro::workspace::secret_from_file("KEY", &key_file).unwrap(),
                        SecretSource::File,
                    ),
                ],
                ..CreateOptions::default()
            },
            &NoProgress,
        )
        .expect("create");
    let id = ws.record.workspace_id.clone();
    let _cleanup = common::delete_on_drop(&pyro, &id);
    let names: Vec<(&str, SecretSource)> = ws
        .record
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.source_kind))
        .collect();
    assert_eq!(
        names,
        [
            ("KEY", SecretSource::File),
            ("TOKEN", SecretSource::Literal)
        ]
    );
    assert_clean("the create result", &serde_json::to_string(&ws).unwrap());
    std::fs::remove_file(&key_file).unwrap();

    // In the guest: a tmpfs directory 0700, files 0600 with the values
    // (the file's trailing newline dropped). Into a command only as
    // asked, under the variable asked for; its output redacted as it
    // streams, in the record, and in the command line kept.
    let (out, r) = exec(
        &pyro,
        &id,
        &format!(
            "stat -f -c %T /run/pyro-secrets; stat -c %a /run/pyro-secrets \
             /run/pyro-secrets/KEY; [ \"$(< /run/pyro-secrets/KEY)\" = \"$KEY_VAR\" ] && echo same; \
             echo \"token=$TOKEN api=${{API:-unset}}\"; echo \"$KEY_VAR\" >&2; \
             : {TOKEN}"
        ),
        &[("TOKEN", "TOKEN"), ("KEY", "KEY_VAR")],
    );
    assert_eq!(
        out,
        format!("tmpfs\n700\n600\nsame\ntoken={REDACTED} api=unset\n{REDACTED}\n")
            .replace("700\n600\nsame\ntoken", "700\n600\nsame\ntoken"),
        "stdout then stderr, as streamed"
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("tmpfs\n700\n600\nsame\ntoken={REDACTED} api=unset\n")
    );
    assert_eq!(String::from_utf8_lossy(&r.stderr), format!("{REDACTED}\n"));
    assert!(
        r.command[2].ends_with(&format!(": {REDACTED}")),
        "{:?}",
        r.command
    );
    // A value split across two chunks of output (two writes a second
    // apart) is still found.
    let half = TOKEN.len() / 2;
    let (out, r) = exec(
        &pyro,
        &id,
        &format!(
            "printf '%s' 'x {}'; sleep 1; printf '%s y\\n' '{}'",
            &TOKEN[..half],
            &TOKEN[half..]
        ),
        &[],
    );
    assert_eq!(out, format!("x {REDACTED} y\n"));
    assert_eq!(String::from_utf8_lossy(&r.stdout), out);
    // An unknown secret is refused before anything runs, naming those
    // there are.
    let unknown = pyro.workspace_exec_with(
        &id,
        &ExecOptions {
            secret_env: vec![("NOPE".into(), "NOPE".into())],
            ..ExecOptions::new(&bash("true"), Duration::from_secs(10))
        },
        &pyro::workspace::Cancel::never(),
        |_, _| {},
    );
    let e = unknown.unwrap_err();
    assert_eq!(e.kind(), "invalid_argument");
    assert!(e.to_string().contains("KEY, TOKEN"), "{e}");
    // An error that spells a value out (a path named after it).
    let e = pyro
        .workspace_file_read(&id, &format!("missing-{TOKEN}"), 100)
        .unwrap_err();
    assert!(e.to_string().contains(REDACTED), "{e}");
    assert_clean("an error", &e.to_string());

    // A shell echoes it; read in pieces shorter than the output but
    // longer than a value, the pieces never show it.
    let shell = pyro
        .workspace_shell_open(
            &id,
            &ShellOptions {
                secret_env: vec![("TOKEN".into(), "TOKEN".into())],
                ..ShellOptions::default()
            },
        )
        .expect("shell open");
    pyro.workspace_shell_write(
        &id,
        &shell.shell_id,
        "echo \"[$TOKEN]\"; echo done-echo",
        true,
    )
    .unwrap();
    let mut screen = String::new();
    let mut cursor = 0;
    for _ in 0..200 {
        let read = pyro
            .workspace_shell_read(
                &id,
                &shell.shell_id,
                &ShellReadOptions {
                    cursor,
                    max_bytes: 32,
                    wait_for_idle_ms: Some(300),
                    ..ShellReadOptions::default()
                },
            )
            .unwrap();
        assert_clean("a shell read", &read.output);
        screen.push_str(&read.output);
        cursor = read.next_cursor;
        if screen.contains("\ndone-echo") {
            break;
        }
    }
    assert!(screen.contains(&format!("[{REDACTED}]")), "{screen:?}");
    let plain = pyro
        .workspace_shell_read(
            &id,
            &shell.shell_id,
            &ShellReadOptions {
                plain: true,
                ..ShellReadOptions::default()
            },
        )
        .unwrap();
    assert!(
        plain.output.contains(&format!("[{REDACTED}]")),
        "{}",
        plain.output
    );
    assert_clean("a plain shell read", &plain.output);
    pyro.workspace_shell_close(&id, &shell.shell_id).unwrap();

    // A service writes it to its logs; its command spells the other out.
    let svc = pyro
        .workspace_service_start(
            &id,
            "app",
            &ServiceOptions {
                secret_env: vec![("TOKEN".into(), "TOKEN".into())],
                ..ServiceOptions::new(format!(
                    "echo \"token=$TOKEN\"; echo \"$TOKEN\" >&2; : {KEY}; exec sleep 300"
                ))
            },
        )
        .expect("service start");
    assert_eq!(svc.state, ServiceState::Ready, "{svc:?}");
    assert!(svc.command.contains(REDACTED), "{}", svc.command);
    assert_clean("a service", &serde_json::to_string(&svc).unwrap());
    let logs = pyro.workspace_service_logs(&id, "app", None).unwrap();
    for _ in 0..20 {
        if logs.stdout.contains("token=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let logs = pyro.workspace_service_logs(&id, "app", None).unwrap();
    assert_eq!(logs.stdout, format!("token={REDACTED}\n"));
    assert_eq!(logs.stderr, format!("{REDACTED}\n"));
    assert_clean("service logs", &serde_json::to_string(&logs).unwrap());

    // Kept memory would hold values on disk: refused, and it runs on.
    let e = pyro.workspace_suspend(&id).unwrap_err();
    assert_eq!(e.kind(), "conflict", "{e}");
    // Checkpoints hold /workspace and the system layer, never /run.
    pyro.checkpoint_create(&id, "with-secrets").unwrap();

    // Rotation: a running workspace gets the new value at once, and the
    // new value is redacted as well.
    pyro.workspace_secret_set(
        &id,
        &Secret::new("TOKEN", ROTATED).unwrap(),
        SecretSource::Literal,
    )
    .unwrap();
    let (out, _) = exec(
        &pyro,
        &id,
        "echo \"$T\"; cat /run/pyro-secrets/TOKEN",
        &[("TOKEN", "T")],
    );
    assert_eq!(out, format!("{REDACTED}\n{REDACTED}"));

    // Stopped and started (a fresh guest): installed again.
    pyro.workspace_stop(&id).unwrap();
    pyro.workspace_start(&id, &NoProgress).unwrap();
    let (out, _) = exec(
        &pyro,
        &id,
        "ls /run/pyro-secrets; [ \"$(< /run/pyro-secrets/KEY)\" = \"$K\" ] && echo same",
        &[("KEY", "K")],
    );
    assert_eq!(out, "KEY\nTOKEN\nsame\n");

    // Unset: gone from the guest and the record; asking for it fails.
    let w = pyro.workspace_secret_unset(&id, "KEY").unwrap();
    assert_eq!(w.record.secrets.len(), 1);
    let (out, _) = exec(&pyro, &id, "ls -A /run/pyro-secrets", &[]);
    assert_eq!(out, "TOKEN\n");
    assert_eq!(
        pyro.workspace_secret_unset(&id, "KEY").unwrap_err().kind(),
        "not_found"
    );

    // History as `logs` returns it.
    let logs = pyro.workspace_logs(&id).unwrap();
    assert_clean("the history", &serde_json::to_string(&logs).unwrap());

    // The data dir: only the host store holds a value, 0600.
    let holders = files_containing(data.path(), &[TOKEN, KEY, ROTATED]);
    let store = data.path().join("workspaces").join(&id).join("secrets");
    for path in &holders {
        assert!(
            path.starts_with(&store),
            "{} holds a secret value",
            path.display()
        );
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert_eq!(
        holders.len(),
        1,
        "the store holds TOKEN only now: {holders:?}"
    );
}

/// Every file under `dir` that contains one of `values` (disk images
/// included; read whole, so keep test disks small and sparse).
fn files_containing(dir: &Path, values: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && contains_any(&path, values) {
                found.push(path);
            }
        }
    }
    found
}

/// Whether the file holds any of `values`: its data regions only
/// (`SEEK_DATA`/`SEEK_HOLE`: sparse disks are mostly holes, which hold
/// nothing), each read in pieces that overlap by a value's length.
fn contains_any(path: &Path, values: &[&str]) -> bool {
    use rustix::fs::{seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let finders: Vec<_> = values
        .iter()
        .map(|v| memchr::memmem::Finder::new(v.as_bytes()))
        .collect();
    let overlap = values.iter().map(|v| v.len()).max().unwrap_or(0) as u64;
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    while pos < len {
        // No data past `pos` (ENXIO): done.
        let Ok(start) = seek(&f, SeekFrom::Data(pos)) else {
            return false;
        };
        let end = seek(&f, SeekFrom::Hole(start)).unwrap_or(len);
        let mut at = start;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let n = f.read_at(&mut buf[..want], at).unwrap();
            if n == 0 {
                break;
            }
            if finders.iter().any(|f| f.find(&buf[..n]).is_some()) {
                return true;
            }
            at += if at + (n as u64) < end {
                (n as u64).saturating_sub(overlap).max(1)
            } else {
                n as u64
            };
        }
        pos = end;
    }
    false
}
