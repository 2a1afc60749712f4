//! The CLI <-> daemon protocol: one JSON request line, one JSON response
//! line, over the daemon's Unix socket.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    ContainerAdd {
        name: String,
        network: String,
        ip: Option<Ipv4Addr>,
        /// Docker `-p` specs.
        #[serde(default)]
        publish: Vec<String>,
    },
    ContainerLs,
    ContainerInspect {
        name: String,
    },
    ContainerRm {
        name: String,
    },
    /// `[HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:CPORT[-END][/proto]`.
    PortmapAdd {
        spec: String,
    },
    PortmapLs,
    PortmapRm {
        spec: String,
    },
    ConntrackLs,
    Stats,
    Down,
}

/// `Ok` carries the command's JSON result, `Err` one line for the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Err(String),
}
