//! The guest's network, as the VMM's user-space stack and guest-init both
//! see it. Every VM uses the same addresses: nothing is routed between
//! VMs or onto a host network, so nothing collides, and one warm snapshot
//! fits every VM whatever its policy.

/// The guest's address on its one interface (`eth0`).
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// Prefix length of the guest's subnet.
pub const PREFIX_LEN: u8 = 24;
/// The VMM's side of the link: the guest's default gateway and its DNS
/// server. Connections to it go to the host's loopback, which the policy
/// denies unless the host's loopback is allowed explicitly.
pub const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];
/// The guest interface's MAC (the same in every VM).
pub const GUEST_MAC: [u8; 6] = [0x02, 0x70, 0x79, 0x72, 0x6f, 0x01];
/// The VMM's MAC on the link.
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x70, 0x79, 0x72, 0x6f, 0x02];
/// The resolver file guest-init writes; the image's `/etc/resolv.conf`
/// is a symlink to it (the root filesystem is read-only).
pub const RESOLV_CONF: &str = "/run/pyro/resolv.conf";
/// Link MTU the device advertises (VIRTIO_NET_F_MTU). Large frames mean
/// fewer packets through the guest kernel, which is what costs on PVM.
pub const MTU: u16 = 65520;
