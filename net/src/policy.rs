//! Who a VM may talk to.
//!
//! A VM's [`NetRules`] say whether it reaches out at all
//! ([`NetworkPolicy`]), to which hosts (`--allow-host`, [`HostPattern`]),
//! and which names it sees mapped by hand (`--add-host`, [`AddHost`]).
//! The VMM asks [`NetRules::check_name`] before answering a DNS query and
//! [`NetRules::check_connect`] before dialing a guest connection on the
//! host. Addresses that lead back into the host or its networks
//! (loopback, private, link-local with the cloud metadata service, CGNAT,
//! multicast) are refused unless the user allowed them explicitly, so an
//! agent cannot reach them by accident or through a name that resolves
//! there (DNS rebinding).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether a VM has a network, and which way connections may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NetworkPolicy {
    /// No network: the safe default for running untrusted code.
    #[default]
    #[serde(rename = "off")]
    Off,
    /// The guest may open outbound connections (subject to the allowlist).
    #[serde(rename = "egress")]
    Egress,
    /// Outbound connections and published guest ports.
    #[serde(rename = "egress+published-ports")]
    EgressPublishedPorts,
    /// Published guest ports only; the guest reaches nothing outside.
    #[serde(rename = "published-ports")]
    PublishedPorts,
}

impl NetworkPolicy {
    /// Every policy, in the order help texts list them.
    pub const ALL: [NetworkPolicy; 4] = [
        NetworkPolicy::Off,
        NetworkPolicy::Egress,
        NetworkPolicy::EgressPublishedPorts,
        NetworkPolicy::PublishedPorts,
    ];

    /// The policy's name on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::Off => "off",
            NetworkPolicy::Egress => "egress",
            NetworkPolicy::EgressPublishedPorts => "egress+published-ports",
            NetworkPolicy::PublishedPorts => "published-ports",
        }
    }

    /// May the guest open outbound connections?
    pub fn egress(self) -> bool {
        matches!(
            self,
            NetworkPolicy::Egress | NetworkPolicy::EgressPublishedPorts
        )
    }

    /// May guest ports be published on the host's 127.0.0.1?
    pub fn published_ports(self) -> bool {
        matches!(
            self,
            NetworkPolicy::EgressPublishedPorts | NetworkPolicy::PublishedPorts
        )
    }

    /// The policy of a new VM: `given`, or if none, the one its other
    /// settings need: published ports imply `egress+published-ports`, an
    /// allowlist alone `egress`, nothing at all `off`. Every surface
    /// (CLI, MCP) implies the same.
    pub fn implied(given: Option<NetworkPolicy>, has_allowlist: bool, publishes: bool) -> Self {
        given.unwrap_or(if publishes {
            NetworkPolicy::EgressPublishedPorts
        } else if has_allowlist {
            NetworkPolicy::Egress
        } else {
            NetworkPolicy::Off
        })
    }
}

impl fmt::Display for NetworkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkPolicy {
    type Err = String;

    /// Case-insensitive, so `--network-policy Egress` works too.
    fn from_str(s: &str) -> Result<Self, String> {
        NetworkPolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown network policy {s:?}; expected one of: off, egress, \
                     egress+published-ports, published-ports"
                )
            })
    }
}

/// The forms `--allow-host` accepts, quoted in every parse error.
const ALLOW_HOST_FORMS: &str = "expected a domain (example.com), any subdomain of one \
     (*.example.com), an IP address (203.0.113.7, 2001:db8::1) or a CIDR range \
     (10.1.0.0/16, fd00::/8), optionally followed by :PORT \
     (in brackets for IPv6: [2001:db8::1]:443)";

/// One `--allow-host` entry: the hosts (and optionally the one port) a
/// guest may connect to.
///
/// A domain matches that name exactly; `*.example.com` matches every
/// subdomain (`a.example.com`, `a.b.example.com`) but not `example.com`
/// itself (allowing both takes two entries). IP and CIDR
/// patterns match addresses, never names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    host: Host,
    /// `None` matches every port.
    port: Option<u16>,
}

/// What a [`HostPattern`] names, without its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    /// A lowercase domain; with `subdomains`, only the names below it.
    Domain { name: String, subdomains: bool },
    /// One address.
    Ip(IpAddr),
    /// A range; the bits after `prefix` are zero in `net`.
    Cidr { net: IpAddr, prefix: u8 },
}

impl HostPattern {
    /// Does this (domain) pattern allow `name` on `port`? Case and a
    /// trailing dot in `name` do not matter.
    pub fn matches_name(&self, name: &str, port: u16) -> bool {
        self.matches_port(port) && self.matches_domain(name)
    }

    /// Does this (IP or CIDR) pattern allow `ip` on `port`? An
    /// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4
    /// address.
    pub fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.matches_port(port) && self.covers(ip)
    }

    /// Is this an IP or CIDR pattern rather than a domain?
    pub fn is_ip(&self) -> bool {
        !matches!(self.host, Host::Domain { .. })
    }

    fn matches_port(&self, port: u16) -> bool {
        self.port.is_none_or(|allowed| allowed == port)
    }

    /// The name part of [`HostPattern::matches_name`], any port.
    fn matches_domain(&self, name: &str) -> bool {
        let Host::Domain {
            name: domain,
            subdomains,
        } = &self.host
        else {
            return false;
        };
        let name = trim_dot(name).as_bytes();
        let domain = domain.as_bytes();
        if !subdomains {
            return name.eq_ignore_ascii_case(domain);
        }
        // At least one byte, then a dot, then the domain.
        let Some(dot) = name.len().checked_sub(domain.len() + 1) else {
            return false;
        };
        dot > 0 && name[dot] == b'.' && name[dot + 1..].eq_ignore_ascii_case(domain)
    }

    /// The address part of [`HostPattern::matches_ip`], any port.
    fn covers(&self, ip: IpAddr) -> bool {
        let covers_exactly = |ip: IpAddr| match self.host {
            Host::Domain { .. } => false,
            Host::Ip(allowed) => allowed == ip,
            Host::Cidr { net, prefix } => in_cidr(ip, net, prefix),
        };
        covers_exactly(ip) || covers_exactly(ip.to_canonical())
    }
}

impl Host {
    /// Is this an IPv6 address or range (written in brackets before a port)?
    fn is_ipv6(&self) -> bool {
        match self {
            Host::Ip(ip) | Host::Cidr { net: ip, .. } => ip.is_ipv6(),
            Host::Domain { .. } => false,
        }
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_host_pattern(s)
            .map_err(|why| format!("invalid --allow-host {s:?}: {why}; {ALLOW_HOST_FORMS}"))
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) if self.host.is_ipv6() => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain {
                name,
                subdomains: true,
            } => write!(f, "*.{name}"),
            Host::Domain { name, .. } => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Cidr { net, prefix } => write!(f, "{net}/{prefix}"),
        }
    }
}

/// Parses an `--allow-host` value; the error says only what is wrong
/// (the caller adds the accepted forms).
fn parse_host_pattern(s: &str) -> Result<HostPattern, String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("it contains whitespace".into());
    }
    let (host, port, bracketed) = split_port(s)?;
    let port = port.map(parse_nonzero_port).transpose()?;
    let host = parse_host(host)?;
    if bracketed && !host.is_ipv6() {
        return Err("brackets are only for IPv6 addresses".into());
    }
    Ok(HostPattern { host, port })
}

/// Splits `host[:port]`, `[v6]:port`, or a bare IPv6 address (several
/// colons, no port) into host, port and whether brackets were used.
fn split_port(s: &str) -> Result<(&str, Option<&str>, bool), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("it opens '[' but never closes it with ']'")?;
        if after.is_empty() {
            return Ok((inside, None, true));
        }
        let port = after.strip_prefix(':').ok_or("only :PORT may follow ']'")?;
        return Ok((inside, Some(port), true));
    }
    match s.matches(':').count() {
        0 => Ok((s, None, false)),
        1 => {
            let (host, port) = s.split_once(':').unwrap_or((s, ""));
            Ok((host, Some(port), false))
        }
        // An IPv6 address or range; a port would need brackets.
        _ => Ok((s, None, false)),
    }
}

/// Parses a domain (optionally `*.`-prefixed), an address or a CIDR range.
fn parse_host(host: &str) -> Result<Host, String> {
    if let Some((addr, prefix)) = host.split_once('/') {
        return parse_cidr(addr, prefix);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let (subdomains, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let name = validate_domain(name)?;
    Ok(Host::Domain { name, subdomains })
}

fn parse_cidr(addr: &str, prefix: &str) -> Result<Host, String> {
    let net: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address (a CIDR range is ADDRESS/PREFIX)"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    if prefix.is_empty() {
        return Err("the prefix length after '/' is missing".into());
    }
    let prefix = match prefix.parse::<u8>() {
        Ok(len) if len <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => len,
        _ => return Err(format!("prefix length /{prefix} is not in 0..={max}")),
    };
    let masked = mask(net, prefix);
    if masked != net {
        return Err(format!(
            "{addr}/{prefix} has address bits set after the prefix; did you mean {masked}/{prefix}?"
        ));
    }
    Ok(Host::Cidr { net, prefix })
}

/// Checks a domain as DNS carries it and returns it lowercased; a
/// trailing dot (fully qualified form) is dropped.
fn validate_domain(name: &str) -> Result<String, String> {
    let name = trim_dot(name);
    if name.is_empty() {
        return Err("the domain is empty".into());
    }
    if name.contains('*') {
        return Err("'*' is only allowed as a leading '*.' (any subdomain)".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "the domain is {} characters long; the limit is 253",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(
                "the domain has an empty label (a leading dot or two dots in a row)".into(),
            );
        }
        if label.len() > 63 {
            return Err(format!(
                "the label {label:?} is {} characters long; the limit is 63",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{c:?} is not allowed in a domain (letters, digits, '-' and '_' only; \
                 use the xn-- form for international names)"
            ));
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name:?} looks like an IPv4 address but is not a valid one"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// `name` without one trailing dot: `example.com.` is `example.com`.
fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Parses a port number in 0..=65535 (digits only: no sign, no spaces).
fn parse_port_number(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("port number is missing".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    port.parse()
        .map_err(|_| format!("port {port} is out of range; ports are 1-65535"))
}

/// Parses a port number in 1..=65535.
fn parse_nonzero_port(port: &str) -> Result<u16, String> {
    match parse_port_number(port)? {
        0 => Err("port 0 is not allowed; ports are 1-65535".into()),
        port => Ok(port),
    }
}

/// `ip` with every bit after the first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Is `ip` in `net/prefix`? Addresses of the other family never are.
fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && mask(ip, prefix) == net
}

/// One `--add-host NAME:IP` entry: the VMM's DNS answers `ip` for `name`
/// without asking the host's resolver, like a line in `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddHost {
    /// The name, lowercase, without a trailing dot.
    pub name: String,
    /// The address it stands for.
    pub ip: IpAddr,
}

impl FromStr for AddHost {
    type Err = String;

    /// Splits at the first ':', so `db:fd00::5` maps `db` to `fd00::5`.
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: String| {
            format!(
                "invalid --add-host {s:?}: {why}; expected NAME:IP, \
                 e.g. db.internal:10.1.2.3 or db.internal:fd00::5"
            )
        };
        let (name, ip) = s
            .split_once(':')
            .ok_or_else(|| invalid("there is no ':' between the name and the address".into()))?;
        if name.contains('*') {
            return Err(invalid("a name cannot be a wildcard".into()));
        }
        let name = validate_domain(name).map_err(invalid)?;
        let bare = ip
            .strip_prefix('[')
            .and_then(|ip| ip.strip_suffix(']'))
            .unwrap_or(ip);
        let ip = bare
            .parse()
            .map_err(|_| invalid(format!("{ip:?} is not an IPv4 or IPv6 address")))?;
        Ok(AddHost { name, ip })
    }
}

impl TryFrom<String> for AddHost {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AddHost> for String {
    fn from(entry: AddHost) -> String {
        entry.to_string()
    }
}

impl fmt::Display for AddHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.ip)
    }
}

/// A VM's network rules, as its creator gave them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetRules {
    /// Which way connections may go.
    pub policy: NetworkPolicy,
    /// `--allow-host` entries; empty allows every public destination.
    #[serde(default)]
    pub allow: Vec<HostPattern>,
    /// `--add-host` entries.
    #[serde(default)]
    pub add_hosts: Vec<AddHost>,
}

/// Where a guest connection would go on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    /// The name the guest resolved through the VMM, if it did.
    pub name: Option<&'a str>,
    /// The address the VMM would dial.
    pub ip: IpAddr,
    /// The port the VMM would dial.
    pub port: u16,
    /// Whether `ip` came from an `--add-host` entry for `name` (rather
    /// than from the host's resolver, which a remote DNS server controls).
    pub from_static: bool,
}

/// Why the VMM said no; [`Refusal::message`] is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which rule refused.
    pub kind: RefusalKind,
    /// What was refused and how to allow it.
    pub message: String,
}

/// Which rule a [`Refusal`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The policy allows no outbound connections.
    PolicyOff,
    /// An allowlist exists and the destination is not on it.
    NotAllowed,
    /// The address leads back into the host or its networks and was not
    /// allowed explicitly.
    DeniedRange,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl NetRules {
    /// The static (`--add-host`) answer for a name (case-insensitive;
    /// trailing dot ignored). The first entry for a name wins, as in
    /// `/etc/hosts`.
    pub fn static_answer(&self, name: &str) -> Option<IpAddr> {
        let name = trim_dot(name);
        self.add_hosts
            .iter()
            .find(|entry| entry.name.eq_ignore_ascii_case(name))
            .map(|entry| entry.ip)
    }

    /// May the guest resolve `name`? (The VMM answers NXDOMAIN when not,
    /// so a refused name looks like one that does not exist.)
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        self.check_egress()?;
        if self.allow.is_empty() {
            return Ok(());
        }
        let by_domain = self.allow.iter().any(|p| p.matches_domain(name));
        let by_static = self
            .static_answer(name)
            .is_some_and(|ip| self.allow.iter().any(|p| p.covers(ip)));
        if by_domain || by_static {
            return Ok(());
        }
        let name = trim_dot(name);
        Err(Refusal {
            kind: RefusalKind::NotAllowed,
            message: format!(
                "{name} is not on the allowlist (--allow-host); allow it with --allow-host {name}"
            ),
        })
    }

    /// May a guest connection go to `dest` on the host side?
    ///
    /// With an allowlist, the destination must be on it, by name or by
    /// address. Whatever the allowlist, an address in a denied range (see
    /// [`denied_range`]) also needs an explicit allow: an IP or CIDR
    /// pattern covering it, or an `--add-host` mapping whose name is
    /// allowed. A public name the host's resolver sends to a private
    /// address is refused, which defeats DNS rebinding.
    pub fn check_connect(&self, dest: &Destination<'_>) -> Result<(), Refusal> {
        self.check_egress()?;
        let by_name = dest
            .name
            .is_some_and(|name| self.allow.iter().any(|p| p.matches_name(name, dest.port)));
        let by_ip = self.allow.iter().any(|p| p.matches_ip(dest.ip, dest.port));
        if !self.allow.is_empty() && !by_name && !by_ip {
            return Err(not_on_allowlist(dest));
        }
        if let Some(range) = find_denied(dest.ip) {
            let explicit = by_ip || (dest.from_static && by_name);
            if !explicit {
                return Err(in_denied_range(dest, range));
            }
        }
        Ok(())
    }

    fn check_egress(&self) -> Result<(), Refusal> {
        if self.policy.egress() {
            return Ok(());
        }
        let suggestion = if self.policy.published_ports() {
            NetworkPolicy::EgressPublishedPorts
        } else {
            NetworkPolicy::Egress
        };
        Err(Refusal {
            kind: RefusalKind::PolicyOff,
            message: format!(
                "network policy {} allows no outbound connections; \
                 start the VM with --network-policy {suggestion} to allow them",
                self.policy
            ),
        })
    }
}

fn not_on_allowlist(dest: &Destination<'_>) -> Refusal {
    let port = dest.port;
    let message = match dest.name {
        Some(name) => {
            let name = trim_dot(name);
            format!(
                "{name}:{port} ({}) is not on the allowlist (--allow-host); \
                 allow it with --allow-host {name}:{port} or --allow-host {name}",
                dest.ip
            )
        }
        None => {
            let ip = dest.ip.to_canonical();
            let pattern = HostPattern {
                host: Host::Ip(ip),
                port: Some(port),
            };
            format!(
                "{pattern} is not on the allowlist (--allow-host); \
                 allow it with --allow-host {pattern} or --allow-host {ip}"
            )
        }
    };
    Refusal {
        kind: RefusalKind::NotAllowed,
        message,
    }
}

fn in_denied_range(dest: &Destination<'_>, range: &DeniedRange) -> Refusal {
    let ip = dest.ip;
    let what = range.what;
    let cidr = range.cidr;
    let subject = match dest.name {
        Some(name) => format!("{} resolves to {ip}, {what}", trim_dot(name)),
        None => format!("{ip} is {what}"),
    };
    Refusal {
        kind: RefusalKind::DeniedRange,
        message: format!(
            "{subject} ({cidr}); allow it explicitly with --allow-host {}",
            ip.to_canonical()
        ),
    }
}

/// A range of addresses that leads back into the host, its networks or
/// nowhere useful.
struct DeniedRange {
    net: IpAddr,
    prefix: u8,
    /// The range as the user would write it.
    cidr: &'static str,
    /// What the range is, with its article, for messages.
    what: &'static str,
}

const fn denied(net: IpAddr, prefix: u8, cidr: &'static str, what: &'static str) -> DeniedRange {
    DeniedRange {
        net,
        prefix,
        cidr,
        what,
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(first: u16, last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, last))
}

/// Denied unless allowed explicitly, whatever the allowlist says.
/// 169.254.0.0/16 holds the cloud metadata service (169.254.169.254).
#[rustfmt::skip]
const DENIED: [DeniedRange; 14] = [
    denied(v4(0, 0, 0, 0), 8, "0.0.0.0/8", "a \"this network\" address"),
    denied(v4(127, 0, 0, 0), 8, "127.0.0.0/8", "a loopback address"),
    denied(v4(10, 0, 0, 0), 8, "10.0.0.0/8", "a private address"),
    denied(v4(172, 16, 0, 0), 12, "172.16.0.0/12", "a private address"),
    denied(v4(192, 168, 0, 0), 16, "192.168.0.0/16", "a private address"),
    denied(v4(100, 64, 0, 0), 10, "100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    denied(v4(169, 254, 0, 0), 16, "169.254.0.0/16", "a link-local address"),
    denied(v4(224, 0, 0, 0), 4, "224.0.0.0/4", "a multicast address"),
    denied(v4(255, 255, 255, 255), 32, "255.255.255.255", "the broadcast address"),
    denied(v6(0, 1), 128, "::1", "the loopback address"),
    denied(v6(0, 0), 128, "::", "the unspecified address"),
    denied(v6(0xfc00, 0), 7, "fc00::/7", "a unique local address"),
    denied(v6(0xfe80, 0), 10, "fe80::/10", "a link-local address"),
    denied(v6(0xff00, 0), 8, "ff00::/8", "a multicast address"),
];

/// The denied range `ip` falls in, as CIDR text (`"10.0.0.0/8"`), or
/// `None` for an address a guest may reach without an explicit allow.
///
/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) IPv6
/// addresses are judged by the IPv4 address inside them.
pub fn denied_range(ip: IpAddr) -> Option<&'static str> {
    find_denied(ip).map(|range| range.cidr)
}

fn find_denied(ip: IpAddr) -> Option<&'static DeniedRange> {
    let ip = embedded_ipv4(ip).map_or(ip, IpAddr::V4);
    DENIED
        .iter()
        .find(|range| in_cidr(ip, range.net, range.prefix))
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped
/// (`::ffff:0:0/96`) or NAT64 well-known prefix (`64:ff9b::/96`).
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let [a, b, 0, 0, 0, 0, _, _] = v6.segments() else {
        return None;
    };
    let [.., w, x, y, z] = v6.octets();
    ((a, b) == (0x64, 0xff9b)).then_some(Ipv4Addr::new(w, x, y, z))
}

/// A published port (`--publish [HOST:]GUEST`): connections to the
/// host's 127.0.0.1:`host` reach the guest's `guest` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host port; `None` lets the host pick a free one.
    pub host: Option<u16>,
    /// The guest port.
    pub guest: u16,
}

/// Parses `GUEST`, `HOST:GUEST` or `127.0.0.1:HOST:GUEST` (also
/// `localhost:HOST:GUEST`). Host port 0 means "any free port" (`None`).
/// Other listen addresses are refused: published ports listen on the
/// host's 127.0.0.1 only, so a VM is never reachable from the network.
pub fn parse_port_mapping(s: &str) -> Result<PortMapping, String> {
    let invalid = |why: String| {
        format!(
            "invalid published port {s:?}: {why}; expected GUEST, HOST:GUEST or \
             127.0.0.1:HOST:GUEST (e.g. 8080:80)"
        )
    };
    let mut fields = s.rsplitn(3, ':');
    let guest = fields.next().unwrap_or_default();
    let host = fields.next();
    if let Some(addr) = fields.next() {
        if addr != "127.0.0.1" && !addr.eq_ignore_ascii_case("localhost") {
            return Err(invalid(format!(
                "published ports listen on 127.0.0.1 only (not {addr}), \
                 so a VM is never reachable from the network"
            )));
        }
    }
    let guest = parse_nonzero_port(guest).map_err(|why| invalid(format!("guest {why}")))?;
    let host = match host.map(parse_port_number).transpose() {
        Ok(Some(0)) | Ok(None) => None,
        Ok(Some(port)) => Some(port),
        Err(why) => return Err(invalid(format!("host {why}"))),
    };
    Ok(PortMapping { host, guest })
}

impl FromStr for PortMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_port_mapping(s)
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Some(host) => write!(f, "{host}:{}", self.guest),
            None => write!(f, "{}", self.guest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as DeError, StrDeserializer};

    fn pattern(s: &str) -> HostPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules(policy: NetworkPolicy, allow: &[&str], add_hosts: &[&str]) -> NetRules {
        NetRules {
            policy,
            allow: allow.iter().map(|s| pattern(s)).collect(),
            add_hosts: add_hosts.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn to<'a>(name: Option<&'a str>, addr: &str, port: u16, from_static: bool) -> Destination<'a> {
        Destination {
            name,
            ip: ip(addr),
            port,
            from_static,
        }
    }

    fn kind(result: Result<(), Refusal>) -> Option<RefusalKind> {
        result.err().map(|refusal| refusal.kind)
    }

    #[test]
    fn policy_strings_round_trip_through_display_fromstr_and_serde() {
        for policy in NetworkPolicy::ALL {
            assert_eq!(policy.to_string().parse::<NetworkPolicy>(), Ok(policy));
            let de = NetworkPolicy::deserialize(StrDeserializer::<DeError>::new(policy.as_str()));
            assert_eq!(de, Ok(policy));
        }
        assert_eq!("EGRESS".parse(), Ok(NetworkPolicy::Egress));
        assert_eq!(NetworkPolicy::default(), NetworkPolicy::Off);
        let err = "open".parse::<NetworkPolicy>().unwrap_err();
        assert!(err.contains("egress+published-ports"), "{err}");
    }

    #[test]
    fn policy_directions() {
        use NetworkPolicy::*;
        let egress: Vec<_> = NetworkPolicy::ALL
            .into_iter()
            .filter(|p| p.egress())
            .collect();
        let published: Vec<_> = NetworkPolicy::ALL
            .into_iter()
            .filter(|p| p.published_ports())
            .collect();
        assert_eq!(egress, [Egress, EgressPublishedPorts]);
        assert_eq!(published, [EgressPublishedPorts, PublishedPorts]);
    }

    #[test]
    fn host_patterns_round_trip() {
        for s in [
            "example.com",
            "*.example.com",
            "example.com:443",
            "*.example.com:8080",
            "my_host-1.internal",
            "localhost",
            "203.0.113.7",
            "203.0.113.7:22",
            "10.1.0.0/16",
            "10.1.0.0/16:5432",
            "0.0.0.0/0",
            "2001:db8::1",
            "[2001:db8::1]:443",
            "fd00::/8",
            "[fd00::/8]:53",
            "::ffff:10.1.2.3",
        ] {
            let parsed = pattern(s);
            assert_eq!(parsed.to_string(), s);
            assert_eq!(pattern(&parsed.to_string()), parsed);
            let de = HostPattern::deserialize(StrDeserializer::<DeError>::new(s));
            assert_eq!(de, Ok(parsed.clone()));
            assert_eq!(String::from(parsed), s);
        }
    }

    #[test]
    fn host_patterns_are_normalized() {
        assert_eq!(pattern("Example.COM.").to_string(), "example.com");
        assert_eq!(pattern("[::1]").to_string(), "::1");
        assert_eq!(pattern("2001:DB8:0:0::1").to_string(), "2001:db8::1");
    }

    #[test]
    fn bad_host_patterns_say_what_is_wrong_and_what_is_accepted() {
        for (s, why) in [
            ("", "empty"),
            ("exa mple.com", "whitespace"),
            ("*", "'*'"),
            ("*example.com", "'*'"),
            ("a.*.example.com", "'*'"),
            ("*.*.example.com", "'*'"),
            ("example.com:0", "port 0"),
            ("example.com:65536", "out of range"),
            ("example.com:http", "not a number"),
            ("example.com:+80", "not a number"),
            ("example.com:", "missing"),
            ("10.0.0.0/33", "/33"),
            ("fd00::/129", "/129"),
            ("10.0.0.0/", "missing"),
            ("10.0.0.0/+8", "/+8"),
            ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
            ("999.1.2.3", "IPv4"),
            ("10.1.2", "IPv4"),
            ("a..b", "empty label"),
            (".example.com", "empty label"),
            ("exämple.com", "xn--"),
            ("under/score", "not an IP address"),
            ("[10.0.0.1]:80", "brackets"),
            ("[::1", "']'"),
            ("[::1]80", "']'"),
            ("1:2:3", "':'"),
        ] {
            let err = s.parse::<HostPattern>().unwrap_err();
            assert!(err.contains(why), "{s:?}: {err}");
            assert!(err.contains("*.example.com"), "{s:?}: {err}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(long_label
            .parse::<HostPattern>()
            .unwrap_err()
            .contains("63"));
        let long_name = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long_name.len(), 255);
        assert!(long_name
            .parse::<HostPattern>()
            .unwrap_err()
            .contains("253"));
        let longest = &long_name[2..];
        assert!(pattern(longest).matches_name(longest, 1));
        assert!(HostPattern::deserialize(StrDeserializer::<DeError>::new("*")).is_err());
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_domain_itself() {
        let any_sub = pattern("*.example.com");
        assert!(any_sub.matches_name("a.example.com", 443));
        assert!(any_sub.matches_name("a.b.example.com", 1));
        assert!(any_sub.matches_name("A.Example.Com.", 1));
        assert!(!any_sub.matches_name("example.com", 443));
        assert!(!any_sub.matches_name("badexample.com", 443));
        assert!(!any_sub.matches_name(".example.com", 443));
        assert!(!any_sub.matches_name("example.com.evil.net", 443));
        let exact = pattern("example.com");
        assert!(exact.matches_name("EXAMPLE.com.", 80));
        assert!(!exact.matches_name("a.example.com", 80));
        assert!(!exact.matches_name("example.co", 80));
    }

    #[test]
    fn ports_narrow_a_pattern() {
        let https = pattern("example.com:443");
        assert!(https.matches_name("example.com", 443));
        assert!(!https.matches_name("example.com", 80));
        let ssh = pattern("10.0.0.0/8:22");
        assert!(ssh.matches_ip(ip("10.9.8.7"), 22));
        assert!(!ssh.matches_ip(ip("10.9.8.7"), 23));
    }

    #[test]
    fn ip_patterns_match_addresses_and_domains_never_do() {
        let net = pattern("10.1.0.0/16");
        assert!(net.is_ip());
        assert!(net.matches_ip(ip("10.1.255.255"), 80));
        assert!(net.matches_ip(ip("::ffff:10.1.2.3"), 80));
        assert!(!net.matches_ip(ip("10.2.0.0"), 80));
        assert!(!net.matches_ip(ip("fd00::1"), 80));
        assert!(!net.matches_name("10.1.2.3", 80));
        assert!(pattern("fd00::/8").matches_ip(ip("fdff::1"), 1));
        assert!(!pattern("fd00::/8").matches_ip(ip("fe00::1"), 1));
        assert!(pattern("::/0").matches_ip(ip("2001:db8::1"), 1));
        assert!(pattern("0.0.0.0/0").matches_ip(ip("8.8.8.8"), 1));
        assert!(pattern("::1").matches_ip(ip("::1"), 1));
        let domain = pattern("example.com");
        assert!(!domain.is_ip());
        assert!(!domain.matches_ip(ip("93.184.216.34"), 80));
    }

    #[test]
    fn add_host_round_trips_and_splits_at_the_first_colon() {
        let db: AddHost = "DB.internal:10.1.2.3".parse().unwrap();
        assert_eq!(db.name, "db.internal");
        assert_eq!(db.ip, ip("10.1.2.3"));
        assert_eq!(db.to_string(), "db.internal:10.1.2.3");
        let v6: AddHost = "db:::1".parse().unwrap();
        assert_eq!(v6.ip, ip("::1"));
        assert_eq!(v6.to_string().parse::<AddHost>(), Ok(v6.clone()));
        assert_eq!("db:[fd00::5]".parse::<AddHost>().unwrap().ip, ip("fd00::5"));
        let de = AddHost::deserialize(StrDeserializer::<DeError>::new("db:::1"));
        assert_eq!(de, Ok(v6.clone()));
        assert_eq!(String::from(v6), "db:::1");
    }

    #[test]
    fn bad_add_hosts_say_what_is_wrong() {
        for (s, why) in [
            ("db.internal", "no ':'"),
            (":10.1.2.3", "empty"),
            ("*.db:10.1.2.3", "wildcard"),
            ("db:", "not an IPv4 or IPv6"),
            ("db:10.1.2", "not an IPv4 or IPv6"),
            ("d b:10.1.2.3", "' '"),
        ] {
            let err = s.parse::<AddHost>().unwrap_err();
            assert!(err.contains(why), "{s:?}: {err}");
            assert!(err.contains("NAME:IP"), "{s:?}: {err}");
        }
    }

    #[test]
    fn net_rules_deserialize_with_defaults() {
        use serde::de::value::MapDeserializer;
        let fields = [("policy", "egress")];
        let de = MapDeserializer::<_, DeError>::new(fields.into_iter());
        let parsed = NetRules::deserialize(de).unwrap();
        assert_eq!(parsed, rules(NetworkPolicy::Egress, &[], &[]));
    }

    #[test]
    fn without_egress_everything_is_refused() {
        for policy in [NetworkPolicy::Off, NetworkPolicy::PublishedPorts] {
            let r = rules(policy, &[], &[]);
            let refusal = r.check_name("example.com").unwrap_err();
            assert_eq!(refusal.kind, RefusalKind::PolicyOff);
            assert!(refusal.message.contains(policy.as_str()), "{refusal}");
            assert!(
                refusal.message.contains("--network-policy egress"),
                "{refusal}"
            );
            let dest = to(Some("example.com"), "93.184.216.34", 443, false);
            assert_eq!(kind(r.check_connect(&dest)), Some(RefusalKind::PolicyOff));
        }
        let refusal = rules(NetworkPolicy::PublishedPorts, &[], &[])
            .check_name("x")
            .unwrap_err();
        assert!(
            refusal.to_string().contains("egress+published-ports"),
            "{refusal}"
        );
    }

    #[test]
    fn an_empty_allowlist_allows_every_public_destination() {
        let r = rules(NetworkPolicy::Egress, &[], &[]);
        assert_eq!(r.check_name("anything.example"), Ok(()));
        let dest = to(Some("example.com"), "93.184.216.34", 443, false);
        assert_eq!(r.check_connect(&dest), Ok(()));
        assert_eq!(
            r.check_connect(&to(None, "2606:4700::1", 80, false)),
            Ok(())
        );
    }

    #[test]
    fn check_name_follows_domain_patterns_and_static_answers() {
        let r = rules(
            NetworkPolicy::EgressPublishedPorts,
            &["example.com:443", "*.pypi.org", "10.1.0.0/16"],
            &["db.internal:10.1.2.3", "cache.internal:10.2.0.1"],
        );
        assert_eq!(r.check_name("example.com"), Ok(()));
        assert_eq!(r.check_name("Files.PyPI.org."), Ok(()));
        assert_eq!(r.check_name("db.internal"), Ok(()));
        for name in ["pypi.org", "cache.internal", "evil.net", "10.1.2.3"] {
            let refusal = r.check_name(name).unwrap_err();
            assert_eq!(refusal.kind, RefusalKind::NotAllowed);
            assert!(
                refusal
                    .message
                    .starts_with(&format!("{name} is not on the allowlist (--allow-host)")),
                "{refusal}"
            );
        }
    }

    #[test]
    fn static_answers_ignore_case_and_trailing_dot_and_the_first_wins() {
        let r = rules(NetworkPolicy::Egress, &[], &["db:10.1.2.3", "DB:10.9.9.9"]);
        assert_eq!(r.static_answer("Db."), Some(ip("10.1.2.3")));
        assert_eq!(r.static_answer("db.internal"), None);
    }

    #[test]
    fn check_connect_with_an_allowlist() {
        let r = rules(
            NetworkPolicy::Egress,
            &["example.com:443", "*.github.com", "203.0.113.0/24:22"],
            &[],
        );
        let ok = |name, addr, port| r.check_connect(&to(name, addr, port, false));
        assert_eq!(ok(Some("example.com"), "93.184.216.34", 443), Ok(()));
        assert_eq!(ok(Some("api.github.com"), "140.82.112.5", 80), Ok(()));
        assert_eq!(ok(None, "203.0.113.9", 22), Ok(()));
        assert_eq!(ok(Some("anything"), "203.0.113.9", 22), Ok(()));
        let refused = ok(Some("example.com"), "93.184.216.34", 80).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::NotAllowed);
        assert!(refused.message.contains("example.com:80"), "{refused}");
        assert!(refused.message.contains("--allow-host"), "{refused}");
        let refused = ok(None, "93.184.216.34", 443).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::NotAllowed);
        assert!(refused.message.contains("93.184.216.34:443"), "{refused}");
        let refused = ok(None, "2001:db8::1", 443).unwrap_err();
        assert!(refused.message.contains("[2001:db8::1]:443"), "{refused}");
    }

    #[test]
    fn denied_ranges_need_an_explicit_allow_whatever_the_allowlist() {
        let open = rules(NetworkPolicy::Egress, &[], &[]);
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::1",
            "::",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a01:203",
        ] {
            let refusal = open.check_connect(&to(None, addr, 80, false)).unwrap_err();
            assert_eq!(refusal.kind, RefusalKind::DeniedRange, "{addr}");
            assert!(refusal.message.contains("--allow-host"), "{refusal}");
            let explicit = rules(NetworkPolicy::Egress, &[addr], &[]);
            assert_eq!(
                explicit.check_connect(&to(None, addr, 80, false)),
                Ok(()),
                "{addr}"
            );
        }
        let refusal = open
            .check_connect(&to(None, "10.1.2.3", 80, false))
            .unwrap_err();
        assert_eq!(
            refusal.message,
            "10.1.2.3 is a private address (10.0.0.0/8); \
             allow it explicitly with --allow-host 10.1.2.3"
        );
        for addr in [
            "172.32.0.1",
            "100.128.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(
                open.check_connect(&to(None, addr, 80, false)),
                Ok(()),
                "{addr}"
            );
        }
    }

    #[test]
    fn denied_range_names_the_range() {
        assert_eq!(denied_range(ip("10.1.2.3")), Some("10.0.0.0/8"));
        assert_eq!(denied_range(ip("169.254.169.254")), Some("169.254.0.0/16"));
        assert_eq!(
            denied_range(ip("::ffff:192.168.0.1")),
            Some("192.168.0.0/16")
        );
        assert_eq!(denied_range(ip("64:ff9b::7f00:1")), Some("127.0.0.0/8"));
        assert_eq!(denied_range(ip("::1")), Some("::1"));
        assert_eq!(denied_range(ip("febf::1")), Some("fe80::/10"));
        assert_eq!(denied_range(ip("1.1.1.1")), None);
        assert_eq!(denied_range(ip("::2")), None);
    }

    #[test]
    fn a_cidr_allow_opens_a_denied_range_only_on_its_port() {
        let r = rules(NetworkPolicy::Egress, &["10.0.0.0/8:5432"], &[]);
        assert_eq!(r.check_connect(&to(None, "10.3.3.3", 5432, false)), Ok(()));
        let refusal = r
            .check_connect(&to(None, "10.3.3.3", 22, false))
            .unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::NotAllowed);
    }

    #[test]
    fn a_mapped_and_allowed_name_may_reach_a_private_address() {
        let r = rules(
            NetworkPolicy::Egress,
            &["db.internal:5432", "example.com"],
            &["db.internal:10.1.2.3"],
        );
        assert_eq!(r.check_name("db.internal"), Ok(()));
        let db = to(Some("db.internal"), "10.1.2.3", 5432, true);
        assert_eq!(r.check_connect(&db), Ok(()));
        let other_port = to(Some("db.internal"), "10.1.2.3", 22, true);
        assert_eq!(
            kind(r.check_connect(&other_port)),
            Some(RefusalKind::NotAllowed)
        );
    }

    #[test]
    fn a_mapping_alone_does_not_allow_a_private_address() {
        let r = rules(NetworkPolicy::Egress, &[], &["db.internal:10.1.2.3"]);
        assert_eq!(r.check_name("db.internal"), Ok(()));
        let db = to(Some("db.internal"), "10.1.2.3", 5432, true);
        assert_eq!(kind(r.check_connect(&db)), Some(RefusalKind::DeniedRange));
    }

    #[test]
    fn a_public_name_resolving_to_a_private_address_is_refused() {
        // DNS rebinding: the allowed name's server answers 127.0.0.1.
        let r = rules(NetworkPolicy::Egress, &["*.attacker.example"], &[]);
        let rebound = to(Some("x.attacker.example"), "127.0.0.1", 8080, false);
        let refusal = r.check_connect(&rebound).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::DeniedRange);
        assert_eq!(
            refusal.message,
            "x.attacker.example resolves to 127.0.0.1, a loopback address (127.0.0.0/8); \
             allow it explicitly with --allow-host 127.0.0.1"
        );
        let mapped = to(Some("x.attacker.example"), "::ffff:10.0.0.1", 80, false);
        let refusal = r.check_connect(&mapped).unwrap_err();
        assert!(
            refusal.message.ends_with("--allow-host 10.0.0.1"),
            "{refusal}"
        );
    }

    #[test]
    fn port_mappings() {
        let parse = |s| parse_port_mapping(s);
        let mapping = |host, guest| Ok(PortMapping { host, guest });
        assert_eq!(parse("80"), mapping(None, 80));
        assert_eq!(parse("8080:80"), mapping(Some(8080), 80));
        assert_eq!(parse("0:80"), mapping(None, 80));
        assert_eq!(parse("127.0.0.1:8080:80"), mapping(Some(8080), 80));
        assert_eq!(parse("LOCALHOST:65535:1"), mapping(Some(65535), 1));
        assert_eq!("8080:80".parse::<PortMapping>(), mapping(Some(8080), 80));
        for s in ["80", "8080:80"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert_eq!(parse("0:80").unwrap().to_string(), "80");
    }

    #[test]
    fn bad_port_mappings_say_what_is_wrong() {
        for (s, why) in [
            ("", "guest port number is missing"),
            ("0", "guest port 0"),
            ("8080:0", "guest port 0"),
            ("65536", "out of range"),
            ("http", "not a number"),
            ("8080:", "guest port number is missing"),
            (":80", "host port number is missing"),
            ("-1:80", "host port \"-1\" is not a number"),
            ("0.0.0.0:8080:80", "127.0.0.1 only (not 0.0.0.0)"),
            ("[::1]:8080:80", "127.0.0.1 only (not [::1])"),
            ("192.168.1.2:8080:80", "127.0.0.1 only"),
        ] {
            let err = parse_port_mapping(s).unwrap_err();
            assert!(err.contains(why), "{s:?}: {err}");
            assert!(err.contains("HOST:GUEST"), "{s:?}: {err}");
        }
    }
}
