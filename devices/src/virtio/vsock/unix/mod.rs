//! The vsock host backend on Unix sockets: [`muxer::VsockMuxer`] maps
//! guest streams to host sockets, one [`conn::Conn`] per stream.

pub mod conn;
pub mod muxer;
