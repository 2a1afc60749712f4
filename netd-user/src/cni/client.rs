//! The plugin's connection to the daemon: one socket API request per
//! call, with the engine's error kind kept, so that it becomes a CNI code.

use std::{
    io::{BufRead, BufReader, ErrorKind as IoKind, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use super::spec::{CniError, code};
use crate::{
    api::{Request, Response},
    engine::error::ErrorKind,
};

/// How long one request may take (an ADD creates a veth and attaches
/// programs: tens of milliseconds; a busy daemon queues mutations).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// Nothing listens on the socket.
    NotRunning(PathBuf),
    /// The engine refused or failed, with its kind.
    Failed { kind: ErrorKind, msg: String },
    /// Anything else (the socket, a reply this plugin cannot read).
    Other(String),
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CallError::Failed {
                kind: ErrorKind::NotFound,
                ..
            }
        )
    }

    /// The CNI error for this failure; `doing` says what netd was asked.
    pub fn to_cni(&self, doing: &str) -> CniError {
        match self {
            CallError::NotRunning(socket) => CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "netd daemon is not running (nothing listens on {}): start it with `netd daemon`, or set \"socket\" in the network configuration to where it listens",
                    socket.display()
                ),
            ),
            CallError::Failed { kind, msg } => {
                CniError::new(kind_code(*kind), format!("{doing}: {msg}"))
            }
            CallError::Other(msg) => CniError::new(code::IO, format!("{doing}: {msg}")),
        }
    }
}

/// The CNI code of an engine error kind (README: "Error codes").
pub fn kind_code(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::InvalidInput => code::INVALID_CONFIG,
        ErrorKind::NotFound => code::NOT_FOUND,
        ErrorKind::AlreadyExists => code::ALREADY_EXISTS,
        ErrorKind::Conflict => code::CONFLICT,
        ErrorKind::InUse => code::IN_USE,
        ErrorKind::Exhausted => code::EXHAUSTED,
        ErrorKind::Kernel => code::KERNEL,
        ErrorKind::Store => code::STORE,
    }
}

pub struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    /// Sends one request, returns the JSON result.
    pub fn call(&self, request: &Request) -> Result<Value, CallError> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            IoKind::NotFound | IoKind::ConnectionRefused => {
                CallError::NotRunning(self.socket.clone())
            }
            IoKind::PermissionDenied => CallError::Other(format!(
                "permission denied on {}: the netd socket is root-only; the runtime must run plugins as root",
                self.socket.display()
            )),
            _ => CallError::Other(format!(
                "cannot connect to the netd daemon at {}: {e}",
                self.socket.display()
            )),
        })?;
        let io = |e: std::io::Error| CallError::Other(format!("talking to the netd daemon: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        let mut line = serde_json::to_vec(request).map_err(|e| CallError::Other(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(io)?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).map_err(io)?;
        if reply.is_empty() {
            return Err(CallError::Other(
                "the daemon closed the connection without answering; see its log".into(),
            ));
        }
        match serde_json::from_str(&reply) {
            Ok(Response::Ok(value)) => Ok(value),
            Ok(Response::Failed { err, kind }) => Err(CallError::Failed { kind, msg: err }),
            Ok(Response::Err(msg)) => Err(CallError::Other(msg)),
            Ok(Response::Item(_)) | Err(_) => Err(CallError::Other(format!(
                "unexpected reply from the daemon (another netd version?): {}",
                reply.trim_end()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_down_is_try_again_later() {
        let dir = std::env::temp_dir().join(format!("netd-cni-client-{}", std::process::id()));
        let err = Daemon::new(&dir.join("none.sock"))
            .call(&Request::Status)
            .unwrap_err();
        let cni = err.to_cni("adding");
        assert_eq!(cni.code, code::TRY_AGAIN_LATER);
        assert!(cni.msg.contains("netd daemon"), "{}", cni.msg);
    }
}
