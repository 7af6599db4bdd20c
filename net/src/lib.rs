//! `pyro-net`: the network a VM sees, run in user space by its VMM.
//!
//! No TAP device, no NAT, no host network configuration: the guest's
//! virtio-net frames end in a TCP/IP stack inside the VMM process, which
//! re-opens the guest's connections as ordinary host sockets, after the
//! VM's policy said yes.
//!
//! - [`policy`]: network policies, `--allow-host` patterns, `--add-host`
//!   entries, and the decision for each name and destination
//!   (loopback, private, link-local, CGNAT and metadata ranges are denied
//!   unless allowed explicitly);
//! - [`dns`]: the DNS messages the VMM answers itself;
//! - [`pool`]: synthetic addresses handed out for allowed names, so a
//!   connection is pinned to the name the guest resolved;
//! - [`stack`]: the stack itself (smoltcp for TCP, the VMM's own DNS and
//!   UDP relay, published ports) and [`stack::NetControl`], the handle
//!   the VMM's control side changes and reads it through.

#![forbid(unsafe_code)]

pub mod dns;
pub mod policy;
pub mod pool;
pub mod stack;
