//! The CLI <-> daemon protocol: one JSON request line, one JSON response
//! line, over the daemon's Unix socket.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::network::DEFAULT_NETWORK;
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
        /// Publish even over a port a host process listens on.
        #[serde(default)]
        force: bool,
    },
    PortmapLs,
    PortmapRm {
        spec: String,
    },
    /// Streamed: one `Response::Item` line per flow, then `Ok` with the
    /// count (or `Err`).
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

/// What `container add` asks for: the CLI's arguments, sent as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
pub struct ContainerSpec {
    /// Container name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 characters.
    pub name: String,
    /// Network to attach to, or a mode: host, none, container:NAME.
    #[arg(long, default_value = DEFAULT_NETWORK)]
    pub network: String,
    /// Address to use instead of the next free one.
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// Publish a port: [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    #[serde(default)]
    pub publish: Vec<String>,
    /// Publish even over host ports a host process listens on (it loses
    /// them to the container).
    #[arg(long)]
    #[serde(default)]
    pub force_publish: bool,
    /// Hostname written to the generated hosts file.
    #[arg(long)]
    pub hostname: Option<String>,
    /// DNS server for the generated resolv.conf (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Extra hosts entry NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    #[serde(default)]
    pub add_host: Vec<String>,
}

/// `Ok` carries the command's JSON result, `Err` one line for the user.
/// A streamed reply (`conntrack ls`) is any number of `Item` lines, then
/// one `Ok` or `Err` line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Err(String),
    Item(serde_json::Value),
}
