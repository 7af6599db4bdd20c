//! TCP between the guest and host sockets. A guest SYN is held while the
//! VMM dials the destination: the guest's connect succeeds only if the
//! host's did, and is refused (RST) otherwise. Bytes then move between
//! the smoltcp socket and the host socket with backpressure both ways:
//! the host is read only while the guest-bound buffer has room, and the
//! guest's data is taken only as fast as the host socket accepts it, so
//! each connection holds at most its two buffers.

use mio::net::TcpStream;
use mio::Token;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::time::{Duration, Instant};

/// Per-direction buffer of one connection.
pub const BUFFER: usize = 256 * 1024;
/// How long a dial may take before the guest's SYN is refused.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The guest's view of a connection: its port, and the address and port
/// it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub guest_port: u16,
    pub remote: (Ipv4Addr, u16),
}

pub struct Pending {
    pub host: TcpStream,
    pub tuple: Tuple,
    pub syn: Vec<u8>,
    pub started: Instant,
}

pub struct Conn {
    pub handle: SocketHandle,
    pub host: TcpStream,
    pub tuple: Tuple,
    /// The host socket may have bytes (edge-triggered: until WouldBlock).
    pub readable: bool,
    pub writable: bool,
    /// The host sent FIN: the guest-bound side is closing.
    pub host_eof: bool,
    /// The guest's FIN was passed on to the host.
    pub host_shut: bool,
}

/// A new smoltcp socket with the relay's buffers and settings.
pub fn socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; BUFFER]),
    );
    s.set_nagle_enabled(false);
    // Unacknowledged data for this long: the guest is gone.
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(120)));
    s
}

/// Moves what can move on every connection; true if anything moved.
/// Connections that are finished are removed (their sockets too).
pub fn relay(conns: &mut HashMap<Token, Conn>, sockets: &mut SocketSet<'_>) -> bool {
    let mut moved = false;
    let mut done = Vec::new();
    for (token, c) in conns.iter_mut() {
        let sock = sockets.get_mut::<tcp::Socket>(c.handle);
        moved |= to_host(c, sock);
        moved |= to_guest(c, sock);
        if matches!(sock.state(), State::Closed | State::TimeWait) {
            done.push(*token);
        }
    }
    for token in done {
        if let Some(c) = conns.remove(&token) {
            sockets.remove(c.handle);
        }
    }
    moved
}

/// Guest → host: the socket's received bytes into the host socket, then
/// the guest's FIN once all of them went.
fn to_host(c: &mut Conn, sock: &mut tcp::Socket<'_>) -> bool {
    let mut moved = false;
    while c.writable && sock.can_recv() {
        let host = &mut c.host;
        match sock.recv(|buf| match host.write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                sock.abort();
                return true;
            }
        }
    }
    let guest_done = matches!(
        sock.state(),
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
    );
    if guest_done && sock.recv_queue() == 0 && !c.host_shut {
        let _ = c.host.shutdown(Shutdown::Write);
        c.host_shut = true;
        moved = true;
    }
    moved
}

/// Host → guest: host bytes into the socket while it has room; the
/// host's FIN closes the socket's sending side.
fn to_guest(c: &mut Conn, sock: &mut tcp::Socket<'_>) -> bool {
    let mut moved = false;
    while c.readable && !c.host_eof && sock.can_send() {
        let host = &mut c.host;
        match sock.send(|buf| match host.read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) => {
                c.host_eof = true;
                sock.close();
                moved = true;
            }
            Ok(Ok(_)) => moved = true,
            Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Ok(Err(_)) | Err(_) => {
                sock.abort();
                return true;
            }
        }
    }
    moved
}
