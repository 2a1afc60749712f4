//! The engine's typed errors. Every error has a kind that a front door
//! maps to its own form (the CLI's exit codes and one-liners, CNI error
//! codes, Docker's `{"Err": ...}`), a message that says what is wrong in
//! words any front door can show, and optionally a remedy that names a
//! front-door action (a flag, a listing command) for the front door to
//! phrase in its own terms.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in the terms a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The named network, container, endpoint or mapping does not exist.
    NotFound,
    /// Something of that name or id exists already.
    AlreadyExists,
    /// The request clashes with existing state (a port, a subnet, a
    /// bridge of someone else's).
    Conflict,
    /// The object is still used by others (containers on a network).
    InUse,
    /// The request itself is wrong (a name, an address, a combination).
    InvalidInput,
    /// A pool ran out (addresses, subnets).
    Exhausted,
    /// The kernel refused or failed (netlink, bpf, namespaces).
    Kernel,
    /// The state database failed.
    Store,
}

/// An action the caller can take, named for the front door to phrase
/// (the CLI says which command or flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// See the list of containers.
    ListContainers,
    /// See the list of networks.
    ListNetworks,
    /// See the list of published ports.
    ListPortmaps,
    /// Adopt the existing bridge explicitly.
    AdoptBridge,
    /// Publish anyway over a host process's port.
    ForcePublish,
    /// Give the network a subnet, or the daemon more address pools.
    GrowAddressPools,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            remedy: None,
        }
    }

    pub fn with_remedy(mut self, remedy: Remedy) -> Self {
        self.remedy = Some(remedy);
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InUse, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Exhausted, message)
    }

    /// A kernel-side failure; the whole context chain (the alternate
    /// form, as anyhow's errors print it) becomes the message.
    pub fn kernel(err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Kernel, one_line(&err))
    }

    /// A state-database failure.
    pub fn store(err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Store, one_line(&err))
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

fn one_line(err: &impl fmt::Display) -> String {
    format!("{err:#}").replace('\n', " ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// For the kernel side's implementations: their own errors (with
/// context) become `Kernel` errors.
pub trait KernelContext<T> {
    fn kernel(self) -> Result<T>;
}

impl<T, E: fmt::Display> KernelContext<T> for std::result::Result<T, E> {
    fn kernel(self) -> Result<T> {
        self.map_err(Error::kernel)
    }
}
