//! The CLI side of the socket protocol.

use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::{Request, Response};

/// Sends one request and returns the daemon's JSON result; a daemon-side
/// error becomes this call's error, verbatim.
pub fn call(socket: &Path, request: &Request) -> Result<Value> {
    call_stream(socket, request, |_| {
        bail!(
            "the daemon sent a streamed reply to a request that has none; is it another netd version?"
        )
    })
}

/// [`call`] for a streamed reply: `item` gets each `Item` line as it
/// arrives; the final `Ok` value is returned.
pub fn call_stream(
    socket: &Path,
    request: &Request,
    mut item: impl FnMut(Value) -> Result<()>,
) -> Result<Value> {
    let mut stream = connect(socket)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .context("setting socket timeout")?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("sending request to the daemon")?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    loop {
        reply.clear();
        reader
            .read_line(&mut reply)
            .context("reading the daemon's reply")?;
        if reply.is_empty() {
            bail!("the daemon closed the connection without answering; see its log");
        }
        match serde_json::from_str(&reply).context("decoding the daemon's reply")? {
            Response::Ok(value) => return Ok(value),
            Response::Err(message) | Response::Failed { err: message, .. } => {
                return Err(anyhow!(message));
            }
            Response::Item(value) => item(value)?,
        }
    }
}

/// Nothing listens on the socket (callers may fall back, as `down` does).
#[derive(Debug)]
pub struct DaemonNotRunning(pub std::path::PathBuf);

impl std::fmt::Display for DaemonNotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "netd daemon is not running (nothing listens on {}): start it with `netd daemon` or `cargo xtask run`, or pass --socket",
            self.0.display()
        )
    }
}

impl std::error::Error for DaemonNotRunning {}

fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            anyhow::Error::new(DaemonNotRunning(socket.to_owned()))
        }
        ErrorKind::PermissionDenied => anyhow!(
            "permission denied on {}: the netd socket is root-only, run the command as root",
            socket.display()
        ),
        _ => anyhow!(
            "cannot connect to the netd daemon at {}: {e}",
            socket.display()
        ),
    })
}
