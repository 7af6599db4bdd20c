//! The network flags: those `run` and `workspace create` share
//! (`--network-policy`, `--allow-host`, `--add-host`), create's
//! `--publish`, and the ones `workspace update` changes a workspace's
//! rules with. Values parse with the SDK's own parsers (`NetworkPolicy`,
//! `HostPattern`, `AddHost`, `PortMapping`), the ones MCP uses too.

use clap::Args;
use pyro_workspace::{AddHost, HostPattern, NetRules, NetworkPolicy};

#[derive(Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// off (the default: no network), egress (outbound connections),
    /// egress+published-ports (outbound, and guest ports on the host's
    /// 127.0.0.1), published-ports (inbound only). Without it,
    /// --allow-host implies egress, and `workspace create --publish`
    /// implies egress+published-ports.
    #[arg(long, value_name = "POLICY")]
    pub network_policy: Option<NetworkPolicy>,
    /// Only these destinations are reachable (repeatable): a domain
    /// (`*.example.com` for its subdomains), an IP or CIDR, each with an
    /// optional `:PORT`. Names resolve only if allowed. Loopback and
    /// private ranges are reachable only when listed here by address.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    pub allow_host: Vec<HostPattern>,
    /// A static DNS answer, `NAME:IP` (repeatable). `127.0.0.1` is the
    /// host's loopback (reachable only if the name is also allowed).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<AddHost>,
}

impl NetworkArgs {
    /// The rules these flags ask for (`run`, which publishes nothing).
    pub fn rules(&self) -> NetRules {
        self.rules_publishing(false)
    }

    /// The rules these flags ask for, for a VM that publishes ports when
    /// `publishes`: without `--network-policy`, publishing implies
    /// `egress+published-ports`, an allowlist alone `egress`, and nothing
    /// at all `off`.
    pub fn rules_publishing(&self, publishes: bool) -> NetRules {
        NetRules {
            policy: NetworkPolicy::implied(
                self.network_policy,
                !self.allow_host.is_empty(),
                publishes,
            ),
            allow: self.allow_host.clone(),
            add_hosts: self.add_host.clone(),
        }
    }
}

/// The network flags of `workspace update`: each one given replaces
/// that part of the workspace's rules (a running VM applies them to new
/// connections); the others stay as they are.
#[derive(Args, Debug, Clone, Default)]
pub struct NetworkUpdateArgs {
    /// A new policy: off, egress, egress+published-ports or
    /// published-ports. The policy is not implied by the other flags
    /// here: an `off` workspace stays off until this says otherwise.
    /// A policy without published ports is refused while ports are
    /// published (`workspace port unpublish` them first).
    #[arg(long, value_name = "POLICY")]
    pub network_policy: Option<NetworkPolicy>,
    /// A new allowlist (repeatable; replaces the whole list): a domain
    /// (`*.example.com` for its subdomains), an IP or CIDR, each with an
    /// optional `:PORT`. Loopback and private ranges need an entry by
    /// address.
    #[arg(
        long = "allow-host",
        value_name = "PATTERN",
        conflicts_with = "clear_allow_hosts"
    )]
    pub allow_host: Vec<HostPattern>,
    /// Remove the allowlist: every public destination is reachable again
    /// (if the policy allows egress).
    #[arg(long)]
    pub clear_allow_hosts: bool,
    /// New static DNS answers `NAME:IP` (repeatable; replaces them all).
    #[arg(
        long = "add-host",
        value_name = "NAME:IP",
        conflicts_with = "clear_add_hosts"
    )]
    pub add_host: Vec<AddHost>,
    /// Remove every static DNS answer.
    #[arg(long)]
    pub clear_add_hosts: bool,
}

impl NetworkUpdateArgs {
    /// The new allowlist, if the flags change it (empty: none).
    pub fn allow_hosts(&self) -> Option<Vec<HostPattern>> {
        replacement(&self.allow_host, self.clear_allow_hosts)
    }

    /// The new static names, if the flags change them.
    pub fn add_hosts(&self) -> Option<Vec<AddHost>> {
        replacement(&self.add_host, self.clear_add_hosts)
    }
}

/// `Some(list)` when the list was given, `Some([])` when cleared, `None`
/// (unchanged) otherwise.
fn replacement<T: Clone>(given: &[T], clear: bool) -> Option<Vec<T>> {
    (clear || !given.is_empty()).then(|| given.to_vec())
}

#[cfg(test)]
mod tests {
    use crate::args::workspace::WorkspaceCommand as W;
    use crate::args::{Cli, Command};
    use pyro_workspace::{NetworkPolicy, PortMapping};

    fn workspace(args: &[&str]) -> W {
        let argv = ["pyro", "workspace"].iter().chain(args).copied();
        match Cli::parse_from_args(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
            Cli {
                command: Command::Workspace(cmd),
                ..
            } => cmd,
            _ => panic!("not a workspace command"),
        }
    }

    /// The policy `workspace create ARGS` asks for, and its ports.
    fn create(args: &[&str]) -> (NetworkPolicy, Vec<PortMapping>) {
        let W::Create(a) = workspace(&[&["create"], args].concat()) else {
            panic!("not create")
        };
        let rules = a.network.rules_publishing(!a.publish.is_empty());
        (rules.policy, a.publish)
    }

    #[test]
    fn create_implies_the_policy_its_flags_need() {
        use NetworkPolicy::*;
        assert_eq!(create(&[]), (Off, vec![]));
        assert_eq!(create(&["--allow-host", "pypi.org"]).0, Egress);
        assert_eq!(create(&["--add-host", "db:10.0.0.5"]).0, Off);
        let (policy, ports) = create(&["--publish", "8000", "--publish", "127.0.0.1:8081:81"]);
        assert_eq!(policy, EgressPublishedPorts);
        let want =
            [(None, 8000), (Some(8081), 81)].map(|(host, guest)| PortMapping { host, guest });
        assert_eq!(ports, want);
        assert_eq!(
            create(&["--publish", "8000", "--allow-host", "pypi.org"]).0,
            EgressPublishedPorts
        );
        // A policy given wins, even one the SDK then refuses.
        assert_eq!(
            create(&["--publish", "8000", "--network-policy", "published-ports"]).0,
            PublishedPorts
        );
        assert_eq!(
            create(&["--publish", "8000", "--network-policy", "off"]).0,
            Off
        );
    }

    #[test]
    fn update_replaces_clears_or_keeps_each_part() {
        let update = |args: &[&str]| {
            let W::Update(a) = workspace(&[&["update", "w"], args].concat()) else {
                panic!("not update")
            };
            a.network
        };
        let none = update(&["--name", "n"]);
        assert_eq!(
            (none.network_policy, none.allow_hosts(), none.add_hosts()),
            (None, None, None)
        );
        let set = update(&[
            "--network-policy",
            "egress",
            "--allow-host",
            "pypi.org",
            "--allow-host",
            "10.0.0.0/8:5432",
            "--add-host",
            "db:10.0.0.5",
        ]);
        assert_eq!(set.network_policy, Some(NetworkPolicy::Egress));
        let allow: Vec<String> = set
            .allow_hosts()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(allow, ["pypi.org", "10.0.0.0/8:5432"]);
        assert_eq!(set.add_hosts().unwrap()[0].to_string(), "db:10.0.0.5");
        let cleared = update(&["--clear-allow-hosts", "--clear-add-hosts"]);
        assert_eq!(cleared.allow_hosts(), Some(vec![]));
        assert_eq!(cleared.add_hosts(), Some(vec![]));
    }

    #[test]
    fn port_commands_take_a_mapping_or_a_guest_port() {
        use crate::args::workspace::PortCommand as P;
        let W::Port(P::Publish(a)) = workspace(&["port", "publish", "w", "8080:80"]) else {
            panic!("not port publish")
        };
        assert_eq!(
            a.port,
            PortMapping {
                host: Some(8080),
                guest: 80
            }
        );
        let W::Port(P::Unpublish(a)) = workspace(&["port", "unpublish", "w", "80"]) else {
            panic!("not port unpublish")
        };
        assert_eq!(a.guest_port, 80);
        assert!(matches!(
            workspace(&["port", "list", "w"]),
            W::Port(P::List(_))
        ));
    }
}
