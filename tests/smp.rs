//! `--vcpus 2` is real: the guest boots the SMP kernel, sees two CPUs and
//! runs two CPU-bound processes at once, both booted cold and restored
//! from the 2-vCPU warm snapshot; a 1-vCPU run still gets the
//! uniprocessor kernel.

mod common;

use common::{leftovers, pyro_with_own_data};
use pyro::images::StderrProgress;
use pyro::workspace::{NoProgress, Pyro, RunOptions, RunResult};
use std::time::Duration;

/// Prints the CPU count and kernel version, then times (guest clock, ms)
/// a fixed amount of user-mode work done twice one after the other, and
/// twice at once in two processes: `nproc`, `uname -v`, then one line
/// `<sequential ms> <parallel ms>` per attempt. User mode runs at native
/// speed even on PVM hosts (only the guest kernel is emulated), and the
/// loop makes no system calls. Up to three attempts, stopping at the
/// first that shows the overlap, so that a moment of host contention
/// (another VM or build on these cores) does not fail the test.
const SCRIPT: &str = r#"
nproc
uname -v
work() { i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
for attempt in 1 2 3; do
  t0=$(ms); work; work; t1=$(ms)
  work & work & wait; t2=$(ms)
  seq=$((t1 - t0)); par=$((t2 - t1))
  echo "$seq $par"
  [ $((par * 10)) -lt $((seq * 7)) ] && break
done
"#;

fn run(pyro: &Pyro, vcpus: u8, cold: bool, script: &str) -> RunResult {
    let opts = RunOptions {
        vcpus,
        cold,
        timeout: Duration::from_secs(60),
        ..RunOptions::default()
    };
    let argv = vec!["sh".into(), "-c".into(), script.into()];
    let r = pyro.run(&opts, &argv, &NoProgress, |_, _| {}).expect("run");
    assert_eq!(
        r.exit_code,
        Some(0),
        "{vcpus} vCPU(s), cold {cold}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.timings.warm, !cold, "{:?}", r.timings);
    r
}

/// Checks a run of [`SCRIPT`] on 2 vCPUs: two CPUs, the SMP kernel, and
/// one attempt where both processes at once took clearly less than the
/// same work one after the other (at most 0.7 of it; 1.0 without
/// parallelism, about 0.5 with it).
fn check_two_cpus_in_parallel(what: &str, r: &RunResult) {
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{what}: nproc\n{out}");
    let version = lines.next().unwrap_or_default();
    assert!(
        version.contains("SMP"),
        "{what}: not the SMP kernel: {version}"
    );
    let attempts: Vec<(u64, u64)> = lines
        .map(|l| {
            let (s, p) = l.split_once(' ').expect("`seq par`");
            (s.parse().unwrap(), p.parse().unwrap())
        })
        .collect();
    eprintln!("{what}: sequential/parallel ms per attempt: {attempts:?}");
    assert!(
        attempts.iter().any(|&(seq, par)| par * 10 < seq * 7),
        "{what}: two busy processes never ran in parallel: {attempts:?}"
    );
}

#[test]
fn two_vcpus_run_two_processes_at_once_cold_and_restored() {
    if !pyro::workspace::testing::guests_available() {
        return;
    }
    let data = common::scratch();
    let pyro = pyro_with_own_data(data.path());
    // The SMP kernel, built on first use like the first kernel (minutes,
    // once per cache); not part of what is tested here.
    common::images()
        .kernel_for_vcpus(2, &StderrProgress::new())
        .expect("SMP kernel");

    let cold = run(&pyro, 2, true, SCRIPT);
    check_two_cpus_in_parallel("cold boot", &cold);

    // The first warm run makes the 2-vCPU snapshot (its own, beside the
    // 1-vCPU one), then restores it.
    let warm = run(&pyro, 2, false, SCRIPT);
    check_two_cpus_in_parallel("restored", &warm);
    eprintln!(
        "2 vCPUs: cold boot {} ms, restore {} ms",
        cold.timings.boot_ms, warm.timings.boot_ms
    );

    // One vCPU is still the uniprocessor kernel.
    let one = run(&pyro, 1, false, "nproc; uname -v");
    let out = String::from_utf8_lossy(&one.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    assert!(!lines.next().unwrap_or_default().contains("SMP"), "{out}");

    assert!(
        leftovers(data.path()).is_empty(),
        "{:?}",
        leftovers(data.path())
    );
}
