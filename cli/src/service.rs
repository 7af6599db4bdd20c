//! Runs `pyro workspace service <verb>`: each verb one SDK call, its
//! result handed to the [`Printer`] (`crate::printer::service`).

use crate::args::service::{ServiceCommand, ServiceStartArgs};
use crate::printer::service::{Logs, Verb};
use crate::printer::Printer;
use pyro_workspace::service_limits::one_probe;
use pyro_workspace::{shell_join, Error, Pyro, ServiceOptions, ServiceState};
use std::time::Duration;

/// Returns the exit code: 1 for a start that did not end ready.
pub fn run(pyro: &Pyro, out: Printer, cmd: ServiceCommand) -> Result<i32, Error> {
    use ServiceCommand as S;
    match cmd {
        S::Start(a) => {
            let opts = options(&a)?;
            let service = pyro.workspace_service_start(&a.id, &a.name, &opts)?;
            out.print(&Verb("start", &service));
            return Ok(if service.state == ServiceState::Ready {
                0
            } else {
                1
            });
        }
        S::List(a) => out.print(&pyro.workspace_service_list(&a.id)?),
        S::Status(a) => out.print(&Verb(
            "status",
            &pyro.workspace_service_status(&a.id, &a.name)?,
        )),
        S::Logs(a) => out.print(&Logs(&pyro.workspace_service_logs(
            &a.id,
            &a.name,
            a.tail_lines,
        )?)),
        S::Stop(a) => out.print(&Verb(
            "stop",
            &pyro.workspace_service_stop(
                &a.id,
                &a.name,
                Some(Duration::from_secs(a.grace_seconds)),
            )?,
        )),
    }
    Ok(0)
}

fn options(a: &ServiceStartArgs) -> Result<ServiceOptions, Error> {
    let ready = one_probe(
        a.ready_file.as_deref(),
        a.ready_tcp.as_deref(),
        a.ready_http.as_deref(),
        a.ready_command.as_deref(),
    )
    .map_err(Error::InvalidArgument)?;
    let env = a
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(Error::InvalidArgument(format!(
                "--env {kv:?}: give NAME=VALUE"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(ServiceOptions {
        // One argument is the command line as given; several are joined
        // as the shell would see them typed.
        command: if a.command.len() == 1 {
            a.command[0].clone()
        } else {
            shell_join(&a.command)
        },
        cwd: Some(a.cwd.clone()),
        env,
        secret_env: a.secret_env.secret_env.clone(),
        ready,
        ready_timeout: Duration::from_secs(a.ready_timeout_seconds),
        publish: a.publish.clone(),
    })
}
