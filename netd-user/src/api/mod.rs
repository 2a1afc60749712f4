//! The socket API: netd's own front door, used by the CLI. One JSON
//! request line in (at most 1 MiB), one JSON response line out; `conntrack
//! ls` streams `Item` lines before it. Requests carry the engine's typed
//! inputs as they are; responses carry JSON rendered by `render` (Docker's
//! shapes where Docker has one).

pub mod client;
pub mod portspec;
pub mod render;

use serde::{Deserialize, Serialize};

use crate::engine::{
    error::ErrorKind,
    model::PortMapping,
    requests::{
        ContainerAdd, ContainerRef, EndpointRef, EndpointRequest, NetworkCreate, PortSelector,
    },
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    ContainerAdd(ContainerAdd),
    ContainerLs,
    ContainerInspect {
        container: ContainerRef,
    },
    ContainerRm {
        container: ContainerRef,
    },
    NetworkCreate(NetworkCreate),
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    NetworkRm {
        name: String,
    },
    NetworkConnect {
        container: ContainerRef,
        endpoint: EndpointRequest,
    },
    NetworkDisconnect {
        container: ContainerRef,
        endpoint: EndpointRef,
    },
    PortmapAdd {
        mappings: Vec<PortMapping>,
        /// Publish even over a port a host process listens on.
        #[serde(default)]
        force: bool,
    },
    PortmapLs,
    PortmapRm {
        selector: PortSelector,
    },
    /// Streamed: one `Response::Item` line per flow, then `Ok` with the
    /// count (or an error).
    ConntrackLs {
        /// Only flows with one of this container's addresses.
        #[serde(default)]
        container: Option<String>,
        /// Only flows with this port on either side of either tuple.
        #[serde(default)]
        port: Option<u16>,
    },
    Stats,
    Down,
}

/// `Ok` carries the command's JSON result; `Err` a request the server
/// could not read; `Failed` an operation that failed, with the engine's
/// error kind (for clients that map it, as the CNI plugin will) and a
/// message phrased for netd's CLI. A streamed reply is any number of
/// `Item` lines, then one of the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Err(String),
    Failed { err: String, kind: ErrorKind },
    Item(serde_json::Value),
}
