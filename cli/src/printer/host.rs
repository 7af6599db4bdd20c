//! How the results of the commands that are not about one workspace
//! read: `run`, `doctor`, `env list|pull|inspect|prune`. One [`Render`]
//! per result; `env` has no summary line.

use super::{path, Render};
use pyro_workspace::{DoctorReport, EnvDeleted, EnvDetail, EnvSummary, PruneReport, RunResult};
use std::io::{self, Write};

/// `run`: the output streamed while it ran.
impl Render for RunResult {
    type Json = RunResult;
    fn json(&self) -> &RunResult {
        self
    }
    fn human(&self, _: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let t = &self.timings;
        let how = match (self.timed_out, self.exit_code, self.signal) {
            (true, _, _) => "timed_out=true".to_string(),
            (_, Some(code), _) => format!("exit_code={code}"),
            (_, None, Some(sig)) => format!("signal={sig}"),
            _ => "exit_code=unknown".to_string(),
        };
        Some(format!(
            "[run] environment={} {how} start={} duration_ms={} boot_ms={} agent_ms={} total_ms={}",
            self.environment,
            if t.warm { "warm" } else { "cold" },
            self.duration_ms,
            t.boot_ms,
            t.agent_ms,
            t.total_ms
        ))
    }
    /// What the network policy refused: why a download failed.
    fn notes(&self) -> Vec<String> {
        self.network_refusals
            .iter()
            .map(|r| format!("[run] network refused: {}", super::network::refusal(r)))
            .collect()
    }
}

impl Render for DoctorReport {
    type Json = DoctorReport;
    fn json(&self) -> &DoctorReport {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let r = self;
        writeln!(out, "Platform:      {}", r.platform)?;
        let kvm = match r.kvm.api_version {
            Some(v) => format!("{} usable (API {v})", r.kvm.path),
            None if r.kvm.exists => format!("{} present but not usable", r.kvm.path),
            None => format!("{} missing", r.kvm.path),
        };
        writeln!(out, "KVM:           {kvm}")?;
        writeln!(out, "Host:          {} ({})", r.host.as_str(), r.host_note)?;
        writeln!(out, "Cache:         {}", path(&r.cache_dir))?;
        writeln!(out, "Data:          {}", path(&r.data_dir))?;
        match (&r.kernel.path, &r.kernel.source_version) {
            (Some(p), Some(v)) => writeln!(
                out,
                "Kernel:        built from linux-source-6.1 {v}: {}",
                path(p)
            )?,
            _ => writeln!(
                out,
                "Kernel:        not built (`pyro env pull` or `pyro doctor --boot` builds it)"
            )?,
        }
        match &r.smp_kernel.path {
            Some(p) => writeln!(out, "SMP kernel:    {} (for --vcpus > 1)", path(p))?,
            None => writeln!(
                out,
                "SMP kernel:    not built (the first --vcpus > 1 builds it)"
            )?,
        }
        for (i, e) in r.environments.iter().enumerate() {
            let label = if i == 0 { "Environments:" } else { "" };
            writeln!(out, "{label:<14} {} [{}]", e.name, installed(e.installed))?;
        }
        if let Some(b) = &r.boot {
            writeln!(
                out,
                "Boot:          {} reached init in {:.0} ms (guest clock {:.0} ms), {} MiB, {} vCPU; exit {:?}; total {:.0} ms",
                b.environment, b.to_init_ms, b.guest_init_ms, b.mem_mib, b.vcpus, b.exit, b.total_ms
            )?;
            writeln!(out, "Console log:   {}", path(&b.console_log))?;
        }
        let net = match (r.network.host_stack, r.network.guest_connect) {
            (false, _) => "not available",
            (true, Some(true)) => "works",
            (true, Some(false)) => "guest check FAILED",
            (true, None) => "host side ready (--boot also checks a guest)",
        };
        writeln!(out, "Network:       {net}: {}", r.network.detail)?;
        let threads: Vec<String> = r
            .sandbox
            .threads
            .iter()
            .map(|t| format!("{} {}", t.thread, t.allowed_calls))
            .collect();
        writeln!(
            out,
            "Sandbox:       {}: {} (system calls allowed: {})",
            r.sandbox.mode,
            r.sandbox.detail,
            threads.join(", ")
        )?;
        writeln!(out, "Result:        {}", if r.ok { "PASS" } else { "FAIL" })?;
        for issue in &r.issues {
            writeln!(out, "  - {issue}")?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        let boot = self.boot.as_ref().map_or(String::new(), |b| {
            format!(" to_init_ms={:.0}", b.to_init_ms)
        });
        Some(format!(
            "[doctor] ok={} host={}{boot}",
            self.ok,
            self.host.as_str()
        ))
    }
}

fn installed(yes: bool) -> &'static str {
    if yes {
        "installed"
    } else {
        "not installed"
    }
}

/// `env list`.
impl Render for Vec<EnvSummary> {
    type Json = [EnvSummary];
    fn json(&self) -> &[EnvSummary] {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for e in self {
            let custom = if e.custom { " [custom]" } else { "" };
            writeln!(
                out,
                "{:<16} [{}]{custom} {}",
                e.name,
                installed(e.installed),
                e.description
            )?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        None
    }
}

/// `env inspect`.
impl Render for EnvDetail {
    type Json = EnvDetail;
    fn json(&self) -> &EnvDetail {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let d = self;
        writeln!(out, "Name:          {}", d.name)?;
        writeln!(out, "Description:   {}", d.description)?;
        writeln!(out, "Packages:      {}", d.packages.join(", "))?;
        let yes = if d.installed { "yes" } else { "no" };
        writeln!(out, "Installed:     {yes}")?;
        if let Some(c) = &d.custom {
            writeln!(
                out,
                "Custom:        from {}, created {}",
                c.from, c.created_at
            )?;
            writeln!(out, "Adds:          {}", c.extra_packages.join(", "))?;
            if let Some(sha) = &c.setup_script_sha256 {
                writeln!(out, "Setup script:  sha256 {sha}")?;
            }
        }
        if let Some(p) = &d.rootfs {
            writeln!(out, "Root image:    {}", path(p))?;
        }
        if let Some(m) = &d.manifest {
            writeln!(
                out,
                "Suite:         {} ({} packages in all) from {}",
                m.suite, m.installed_packages, m.mirror
            )?;
            writeln!(
                out,
                "Image size:    {:.1} MiB, built {}",
                m.size as f64 / 1048576.0,
                m.built_at
            )?;
            for (pkg, ver) in &m.package_versions {
                writeln!(out, "  {pkg} {ver}")?;
            }
        }
        if let (Some(p), Some(m)) = (&d.kernel, &d.kernel_manifest) {
            writeln!(
                out,
                "Kernel:        {} {} ({})",
                m.source_package,
                m.source_version,
                path(p)
            )?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        None
    }
}

/// `env pull` and `env build`: the environment, ready.
pub struct Ready<'a> {
    /// `pull` or `build`: the summary line's tag.
    pub verb: &'static str,
    pub detail: &'a EnvDetail,
}

impl Render for Ready<'_> {
    type Json = EnvDetail;
    fn json(&self) -> &EnvDetail {
        self.detail
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        self.detail.human(out)
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[{}] environment={} phase=ready",
            self.verb, self.detail.name
        ))
    }
}

/// `env delete`.
impl Render for EnvDeleted {
    type Json = EnvDeleted;
    fn json(&self) -> &EnvDeleted {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Deleted environment {}.", self.name)?;
        for p in &self.deleted {
            writeln!(out, "- {}", path(p))?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        None
    }
}

/// `env prune`.
impl Render for PruneReport {
    type Json = PruneReport;
    fn json(&self) -> &PruneReport {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let noun = if self.count == 1 { "entry" } else { "entries" };
        writeln!(out, "Deleted {} cached {noun}.", self.count)?;
        for p in &self.deleted {
            writeln!(out, "- {}", path(p))?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        None
    }
}
