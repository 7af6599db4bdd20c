//! Custom environments end to end: a build that names a package Debian
//! does not have fails with apt's own message and leaves nothing; a build
//! with one extra package and a setup script is listed, runs one-shot
//! commands (warm start) and workspaces (cold boot), cannot be deleted
//! while a workspace uses it, and is then deleted with its files.

mod common;

use common::pyro_with_own_data;
use pyro::workspace::{CreateOptions, CustomRequest, NoProgress, RunOptions, StderrProgress};
use std::time::Duration;

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[test]
fn a_custom_environment_is_built_used_and_deleted() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    let name = format!("test-jq-{}", std::process::id());
    let images_dir = pyro::images::Images::new(pyro.paths().clone()).images_dir(&name);
    let partials = || -> Vec<String> {
        let suffix = format!("-{}", std::process::id());
        std::fs::read_dir(pyro.paths().cache.join("rootfs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".partial-") && n.ends_with(&suffix))
                    .collect()
            })
            .unwrap_or_default()
    };

    // Refused before anything is built.
    for (req, word) in [
        (
            CustomRequest {
                name: "debian:12".into(),
                from: "debian:12".into(),
                packages: vec!["jq".into()],
                ..Default::default()
            },
            "catalog",
        ),
        (
            CustomRequest {
                name: name.clone(),
                from: "debian:12".into(),
                packages: vec!["jq --allow-unauthenticated".into()],
                ..Default::default()
            },
            "Debian package name",
        ),
    ] {
        let e = pyro.env_build(&req, &NoProgress).unwrap_err();
        assert_eq!(e.kind(), "invalid_argument", "{e}");
        assert!(e.to_string().contains(word), "{e}");
    }

    // A package Debian does not have: apt's message, nothing left.
    let bad = CustomRequest {
        name: name.clone(),
        from: "debian:12".into(),
        packages: vec!["jq".into(), "pyro-no-such-package".into()],
        ..Default::default()
    };
    let e = pyro.env_build(&bad, &NoProgress).unwrap_err();
    assert_eq!(e.kind(), "image_build", "{e}");
    assert!(
        e.to_string()
            .contains("Unable to locate package pyro-no-such-package"),
        "{e}"
    );
    assert_eq!(
        pyro.env_inspect(&name).unwrap_err().kind(),
        "unknown_environment"
    );
    assert!(!images_dir.exists());
    assert_eq!(partials(), Vec::<String>::new());
    assert!(!pyro.env_list().iter().any(|e| e.name == name));

    // One extra package and a setup script.
    let req = CustomRequest {
        name: name.clone(),
        from: "debian:12".into(),
        packages: vec!["jq".into()],
        setup_script: Some("#!/bin/sh\nset -e\necho made-by-setup > /etc/pyro-test-mark\n".into()),
        description: None,
    };
    let detail = pyro.env_build(&req, &StderrProgress::new()).expect("build");
    assert!(detail.installed, "{detail:?}");
    let custom = detail.custom.as_ref().expect("custom");
    assert_eq!(custom.from, "debian:12");
    assert_eq!(custom.extra_packages, ["jq"]);
    assert!(custom.setup_script_sha256.is_some());
    assert!(detail
        .manifest
        .as_ref()
        .unwrap()
        .package_versions
        .contains_key("jq"));
    let listed = pyro.env_list();
    let entry = listed.iter().find(|e| e.name == name).expect("listed");
    assert!(entry.custom && entry.installed, "{entry:?}");
    // Building it again with the same inputs is a no-op; with others, refused.
    let again = pyro.env_build(&req, &NoProgress).expect("same build");
    assert_eq!(again.rootfs, detail.rootfs);
    let other = CustomRequest {
        packages: vec!["jq".into(), "file".into()],
        ..req.clone()
    };
    let e = pyro.env_build(&other, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("env delete"), "{e}");

    // `run` (warm start, as users get it).
    let r = pyro
        .run(
            &RunOptions {
                environment: name.clone(),
                ..RunOptions::default()
            },
            &sh("jq -n '1+1' && cat /etc/pyro-test-mark && test ! -e /tmp/pyro-setup-script"),
            &NoProgress,
            |_, _| {},
        )
        .expect("run");
    assert_eq!(
        (r.exit_code, String::from_utf8_lossy(&r.stdout).as_ref()),
        (Some(0), "2\nmade-by-setup\n"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    // A workspace.
    let ws = pyro
        .workspace_create(
            &CreateOptions {
                environment: name.clone(),
                cold: true,
                ttl_seconds: Some(900),
                ..CreateOptions::default()
            },
            &NoProgress,
        )
        .expect("create");
    let id = ws.record.workspace_id.clone();
    {
        let _guard = common::delete_on_drop(&pyro, &id);
        let r = pyro
            .workspace_exec(
                &id,
                &sh("echo '{\"a\":3}' | jq .a"),
                Duration::from_secs(120),
                |_, _| {},
            )
            .expect("exec");
        assert_eq!(String::from_utf8_lossy(&r.stdout), "3\n");
        // Refused while the workspace uses it.
        let e = pyro.env_delete(&name).unwrap_err();
        assert_eq!(e.kind(), "conflict", "{e}");
        assert!(e.to_string().contains(&id), "{e}");
        assert!(images_dir.exists());
    }

    let deleted = pyro.env_delete(&name).expect("delete");
    assert!(deleted.deleted.contains(&images_dir), "{deleted:?}");
    assert!(!images_dir.exists());
    assert_eq!(
        pyro.env_inspect(&name).unwrap_err().kind(),
        "unknown_environment"
    );
    // Its warm snapshot went with it.
    let snapshots = std::fs::read_dir(pyro.paths().cache.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{}-", name.replace('-', "_")))
        })
        .count();
    assert_eq!(snapshots, 0);
}
