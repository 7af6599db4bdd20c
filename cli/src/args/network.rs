//! The network flags `run` and `workspace create` share:
//! `--network-policy`, `--allow-host`, `--add-host`. Values parse with
//! `pyro_net::policy`'s own parsers, the ones the SDK and MCP use.

use clap::Args;
use pyro_vmm::net::policy::{AddHost, HostPattern, NetRules, NetworkPolicy};

#[derive(Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// off (default: no network), egress (outbound connections),
    /// egress+published-ports (and --publish), published-ports (inbound
    /// only). --allow-host alone implies egress.
    #[arg(long, value_name = "POLICY")]
    pub network_policy: Option<NetworkPolicy>,
    /// Only these destinations are reachable (repeatable): a domain
    /// (`*.example.com` for its subdomains), an IP or CIDR, each with an
    /// optional `:PORT`. Loopback and private ranges are reachable only
    /// when listed here by address.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    pub allow_host: Vec<HostPattern>,
    /// A static DNS answer, `NAME:IP` (repeatable). `127.0.0.1` is the
    /// host's loopback (reachable only if the name is also allowed).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<AddHost>,
}

impl NetworkArgs {
    /// The rules these flags ask for.
    pub fn rules(&self) -> NetRules {
        let policy = self
            .network_policy
            .unwrap_or(if self.allow_host.is_empty() {
                NetworkPolicy::Off
            } else {
                NetworkPolicy::Egress
            });
        NetRules {
            policy,
            allow: self.allow_host.clone(),
            add_hosts: self.add_host.clone(),
        }
    }
}
