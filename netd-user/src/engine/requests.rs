//! The engine's typed inputs: what a front door asks for, already parsed
//! (no option strings, no `-p` syntax). They are also the wire form of the
//! socket API (serde), so the CLI sends them as they are.

use std::{net::IpAddr, path::PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::model::{GatewayMode, PortMapping, PortRange, Proto};

/// `network create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkCreate {
    pub name: String,
    /// The caller's id for it (Docker's network id); default: a new one.
    #[serde(default)]
    pub id: Option<String>,
    /// Default: the next free subnet of the address pools.
    #[serde(default)]
    pub subnet: Option<IpNetwork>,
    /// Default: the subnet's first host address.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Dual stack (Docker's `--ipv6`): an IPv6 subnet besides the IPv4
    /// one, `subnet6` or the next free one of the IPv6 pool.
    #[serde(default)]
    pub ipv6: bool,
    #[serde(default)]
    pub subnet6: Option<IpNetwork>,
    /// Default: the IPv6 subnet's first host address.
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    #[serde(default)]
    pub internal: bool,
    /// Bridge device name; default `br-<id prefix>`.
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    /// Use the existing bridge named by `bridge`.
    #[serde(default)]
    pub adopt_bridge: bool,
}

/// Where a new container's namespace comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SandboxRequest {
    /// netd creates a namespace (named after the container) and attaches
    /// it to `endpoint`'s network.
    Create,
    /// netd creates a namespace with only `lo` (`--network none`).
    Isolated,
    /// A runtime's namespace, by path (CNI's `CNI_NETNS`).
    Given { path: PathBuf },
    /// The host's namespace.
    Host,
    /// Another container's namespace, by name.
    Shared { container: String },
    /// No namespace netd sees: the runtime moves the interfaces itself.
    Runtime,
}

/// An endpoint to create on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRequest {
    pub network: String,
    /// The caller's id for it (Docker's endpoint id).
    #[serde(default)]
    pub id: Option<String>,
    /// Interface name inside the container; default the next free ethN.
    #[serde(default)]
    pub ifname: Option<String>,
    /// A fixed address instead of the next free one.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// A fixed IPv6 address (dual-stack networks) instead of the next
    /// free one.
    #[serde(default)]
    pub ip6: Option<IpAddr>,
    /// Leave the container side on the host for the runtime to move.
    #[serde(default)]
    pub peer_on_host: bool,
}

/// A `-p`: the container side's address is the container's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Publish {
    /// Unspecified: every host address.
    pub host_ip: IpAddr,
    pub host_ports: PortRange,
    pub container_ports: PortRange,
    pub proto: Proto,
    /// 0.0.0.0 given as such: IPv4 only (`PortMapping::ipv4_only`).
    #[serde(default)]
    pub ipv4_only: bool,
}

impl Publish {
    /// Which family's every address the mapping is on: `Some(None)` both,
    /// `Some(Some(true))` IPv4, `Some(Some(false))` IPv6; `None` for one
    /// address.
    fn wildcard_family(&self) -> Option<Option<bool>> {
        match self.host_ip {
            IpAddr::V4(ip) if ip.is_unspecified() => Some(self.ipv4_only.then_some(true)),
            IpAddr::V6(ip) if ip.is_unspecified() => Some(Some(false)),
            _ => None,
        }
    }
}

/// `list` with each port's mappings on every address of one family
/// (`0.0.0.0` and `::`, or one of them beside a mapping on both) made one
/// mapping on both families, and repeats dropped: as Docker and the
/// reference CNI portmap plugin mean a host address given once per
/// family. Two mappings, one per family, would each claim the port (or
/// pick a port of a range) on their own.
pub fn merge_family_wildcards(list: Vec<Publish>) -> Vec<Publish> {
    let mut out: Vec<Publish> = Vec::with_capacity(list.len());
    for p in list {
        let family = p.wildcard_family();
        let twin = out.iter_mut().find(|q| {
            (q.host_ports, q.container_ports, q.proto) == (p.host_ports, p.container_ports, p.proto)
                && q.wildcard_family().is_some()
        });
        if let (Some(q), Some(family)) = (twin, family) {
            if q.wildcard_family() != Some(family) {
                // The other family's (or both): together, both.
                q.host_ip = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
                q.ipv4_only = false;
            }
            continue;
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// `container add`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerAdd {
    pub name: String,
    /// The caller's id (CNI's container id); default: a new one.
    #[serde(default)]
    pub id: Option<String>,
    pub sandbox: SandboxRequest,
    /// The first endpoint (eth0), for sandboxes that take endpoints.
    #[serde(default)]
    pub endpoint: Option<EndpointRequest>,
    #[serde(default)]
    pub publish: Vec<Publish>,
    /// Publish even over host ports a host process listens on.
    #[serde(default)]
    pub force_publish: bool,
    /// Default: the id's first 12 digits.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub extra_hosts: Vec<(String, IpAddr)>,
}

/// Which published mapping `unpublish` removes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PortSelector {
    /// Exactly this mapping.
    Exact(PortMapping),
    /// The mapping with this host side (`PortMapping::host_side`).
    HostSide(String),
}

/// A container, by the name netd knows it by or by its id (a runtime's
/// own id: CNI's container id, Docker's sandbox id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRef {
    Name(String),
    Id(String),
}

/// One endpoint of a container: by its network, by its interface name
/// inside the container (CNI's `CNI_IFNAME`), or by the caller's id for it
/// (Docker's endpoint id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndpointRef {
    Network(String),
    Ifname(String),
    Id(String),
}

/// What an address request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressUse {
    /// The network's gateway (Docker's `RequestAddressType`
    /// `com.docker.network.gateway`).
    Gateway,
    /// An endpoint's (or an auxiliary) address.
    Host,
}
