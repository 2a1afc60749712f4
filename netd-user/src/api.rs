//! The CLI <-> daemon protocol: one JSON request line, one JSON response
//! line, over the daemon's Unix socket.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use crate::network::NetworkSpec;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    ContainerAdd(ContainerSpec),
    ContainerLs,
    NetworkCreate(NetworkSpec),
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    NetworkRm {
        name: String,
    },
    NetworkConnect {
        network: String,
        container: String,
        ip: Option<Ipv4Addr>,
    },
    NetworkDisconnect {
        network: String,
        container: String,
    },
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

/// What `container add` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    /// A network name, or `host`, `none`, `container:OTHER`.
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    /// Docker `-p` specs.
    #[serde(default)]
    pub publish: Vec<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// `NAME:IP`.
    #[serde(default)]
    pub add_host: Vec<String>,
}

/// `Ok` carries the command's JSON result, `Err` one line for the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Err(String),
}
