//! How service results read: a `[workspace-service-<verb>]` line on
//! stderr with the state a script checks; `logs` prints stdout's log on
//! stdout and stderr's on stderr, as the service wrote them.

use super::Render;
use pyro_workspace::{Service, ServiceList, ServiceLogs, ServiceState};
use std::io::{self, Write};

/// `service start`, `status` and `stop`: the verb and the service.
pub struct Verb<'a>(pub &'static str, pub &'a Service);

/// `service logs`' result.
pub struct Logs<'a>(pub &'a ServiceLogs);

fn state(s: &Service) -> &'static str {
    match s.state {
        ServiceState::Starting => "starting",
        ServiceState::Ready => "ready",
        ServiceState::Exited => "exited",
        ServiceState::Failed => "failed",
        ServiceState::Stopped => "stopped",
    }
}

fn line(verb: &str, s: &Service) -> String {
    let mut line = format!(
        "[workspace-service-{verb}] workspace_id={} service={} state={} pid={}",
        s.workspace_id,
        s.name,
        state(s),
        s.pid
    );
    if let Some(ms) = s.ready_after_ms {
        line.push_str(&format!(" ready_after_ms={ms}"));
    }
    if let Some(code) = s.exit_code {
        line.push_str(&format!(" exit_code={code}"));
    }
    if let Some(signal) = s.exit_signal {
        line.push_str(&format!(" exit_signal={signal}"));
    }
    for p in &s.ports {
        if let Some(host) = p.host_port {
            line.push_str(&format!(" port=127.0.0.1:{host}->{}", p.guest_port));
        }
    }
    line
}

/// What a person reads about one service.
fn describe(s: &Service, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "{} [{}] {}", s.name, state(s), s.command)?;
    if let Some(code) = s.exit_code {
        write!(out, " (exit code {code})")?;
    }
    if let Some(signal) = s.exit_signal {
        write!(out, " (signal {signal})")?;
    }
    writeln!(out)?;
    if let Some(reason) = &s.reason {
        writeln!(out, "  {reason}")?;
    }
    for p in &s.ports {
        match p.host_port {
            Some(host) => writeln!(out, "  127.0.0.1:{host} -> guest port {}", p.guest_port)?,
            None => writeln!(out, "  guest port {} (not published now)", p.guest_port)?,
        }
    }
    Ok(())
}

impl Render for Verb<'_> {
    type Json = Service;
    fn json(&self) -> &Service {
        self.1
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        describe(self.1, out)
    }
    fn summary(&self) -> Option<String> {
        Some(line(self.0, self.1))
    }
    fn notes(&self) -> Vec<String> {
        match self.1.state {
            ServiceState::Exited | ServiceState::Failed => vec![format!(
                "see its output: pyro workspace service logs {} {}",
                self.1.workspace_id, self.1.name
            )],
            _ => Vec::new(),
        }
    }
}

impl Render for Logs<'_> {
    type Json = ServiceLogs;
    fn json(&self) -> &ServiceLogs {
        self.0
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.0.stdout.as_bytes())?;
        out.flush()?;
        io::stderr().write_all(self.0.stderr.as_bytes())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "{} stdout_omitted={} stderr_omitted={}",
            line("logs", &self.0.service),
            self.0.stdout_omitted,
            self.0.stderr_omitted
        ))
    }
}

impl Render for ServiceList {
    type Json = ServiceList;
    fn json(&self) -> &ServiceList {
        self
    }
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.services.is_empty() {
            return writeln!(out, "No services.");
        }
        for s in &self.services {
            describe(s, out)?;
        }
        Ok(())
    }
    fn summary(&self) -> Option<String> {
        Some(format!(
            "[workspace-service-list] workspace_id={} count={}",
            self.workspace_id,
            self.services.len()
        ))
    }
}
