//! The RPC agent: listens on vsock, one thread per connection, requests
//! on a connection served in order (see `proto::rpc`).

use super::{exec, log};
use pyro_guest_init::proto::rpc::{self, Event, Reply, Request};
use std::io::{BufReader, BufWriter, Write};
use vsock::{VsockListener, VsockStream, VMADDR_CID_ANY};

/// Binds the agent port; failure is fatal for a serving guest.
pub fn listen() -> std::io::Result<VsockListener> {
    VsockListener::bind_with_cid_port(VMADDR_CID_ANY, rpc::AGENT_PORT)
}

/// Accepts connections forever, each on its own thread.
pub fn serve(listener: VsockListener) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let spawned = std::thread::Builder::new()
                    .name("rpc".into())
                    .spawn(move || connection(stream));
                if let Err(e) = spawned {
                    log(&format!("agent: cannot start a connection thread: {e}"));
                }
            }
            Err(e) => log(&format!("agent: accept: {e}")),
        }
    }
}

fn connection(stream: VsockStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(stream);
    loop {
        let request = match rpc::read_frame::<Request>(&mut reader) {
            Ok(Some((request, _data))) => request,
            Ok(None) => return,
            Err(e) => {
                // A malformed frame: say so and close this connection only.
                let error = Event::Error {
                    kind: "bad_frame".into(),
                    message: e.to_string(),
                };
                let _ = rpc::write_frame(&mut writer, &error, &[]);
                let _ = writer.flush();
                return;
            }
        };
        let done = match request {
            Request::Ping => Ok(Reply::Pong {
                uptime_ms: super::clock::monotonic_us() / 1000,
                hostname: hostname(),
            }),
            Request::Exec(req) => exec::run(&req, &mut writer).map(Reply::Exec),
        };
        let event = match done {
            Ok(reply) => Event::Done(reply),
            Err(e) => Event::Error {
                kind: e.kind.into(),
                message: e.message,
            },
        };
        if rpc::write_frame(&mut writer, &event, &[])
            .and_then(|_| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
