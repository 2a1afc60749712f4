//! What the engine manages, as stored: networks, containers (sandboxes
//! with endpoints) and published ports. Addresses are `IpAddr`/`IpNetwork`
//! throughout, so IPv6 is an addition, not a new model. The serde forms
//! are the store's; field names match the records of earlier versions
//! wherever the meaning did not change (see `store::legacy`).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// The default network (Docker's `bridge`), created at first start.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Docker's predefined networks: they exist from the start and cannot be
/// created or removed.
pub const RESERVED_NETWORKS: [&str; 3] = [DEFAULT_NETWORK, "host", "none"];
/// The predefined networks that are modes, not bridges, with the driver
/// Docker shows for them.
pub const PSEUDO_NETWORKS: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

/// A network: a driver's L2 domain with a subnet and a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, or the id a caller gave (Docker's network id).
    pub id: String,
    /// Small integer the datapath tells networks apart by.
    pub net_id: u32,
    /// The driver that sets it up (`bridge`).
    #[serde(default = "bridge_driver")]
    pub driver: String,
    pub bridge: String,
    /// The IPv4 subnet (an IPv6 one in records written before dual stack
    /// never existed: `network create` refused it at the datapath).
    pub subnet: IpNetwork,
    pub gateway: IpAddr,
    /// The IPv6 subnet of a dual-stack network (`--ipv6`); absent in
    /// records of earlier versions, which stay readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<IpNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<IpAddr>,
    pub internal: bool,
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    /// The bridge existed before and was adopted: netd never deletes it,
    /// only the gateway address it added.
    #[serde(default)]
    pub adopted_bridge: bool,
}

fn bridge_driver() -> String {
    "bridge".into()
}

/// Docker's `com.docker.network.bridge.gateway_mode_ipv4`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GatewayMode {
    /// MASQUERADE outbound; from outside only published ports and replies
    /// reach the containers.
    #[default]
    Nat,
    /// No NAT: hosts that route the subnet here reach the containers
    /// directly, and they leave with their own addresses.
    Routed,
}

impl GatewayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::Routed => "routed",
        }
    }
}

impl Network {
    /// Docker's `EnableIPv6`.
    pub fn ipv6(&self) -> bool {
        self.subnet6.is_some()
    }

    /// The `netd_common::net_flags` bits the datapath enforces.
    pub fn datapath_flags(&self) -> u32 {
        let mut flags = 0;
        if self.internal {
            flags |= netd_common::net_flags::INTERNAL;
        }
        if self.gateway_mode == GatewayMode::Routed {
            flags |= netd_common::net_flags::ROUTED;
        }
        flags
    }
}

/// A container's id: 64 hex digits netd picked, or the runtime's own
/// (CNI's container id, Docker's sandbox id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a container's network namespace comes from (Docker's network
/// modes and the runtimes' own namespaces).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sandbox {
    /// A namespace attached to networks: made by netd (`container add`) or
    /// by a runtime that gave its path (CNI's `CNI_NETNS`).
    Netns { path: PathBuf, owner: Owner },
    /// A namespace of netd's with only `lo` (`--network none`).
    Isolated { path: PathBuf },
    /// The host's own namespace (`--network host`).
    Host,
    /// Another container's namespace (`--network container:NAME`).
    Shared { container: String },
    /// A namespace netd never sees: the runtime moves the endpoints'
    /// interfaces in itself (Docker's `Join`).
    Runtime,
}

/// Who made (and so deletes) a namespace.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Netd,
    Runtime,
}

impl Sandbox {
    /// The namespace file, where netd knows one.
    pub fn netns(&self) -> Option<&Path> {
        match self {
            Sandbox::Netns { path, .. } | Sandbox::Isolated { path } => Some(path),
            _ => None,
        }
    }

    /// The namespace netd created and deletes with the container.
    pub fn owned_netns(&self) -> Option<&Path> {
        match self {
            Sandbox::Netns {
                path,
                owner: Owner::Netd,
            }
            | Sandbox::Isolated { path } => Some(path),
            _ => None,
        }
    }

    /// Whether endpoints can be attached (to networks).
    pub fn takes_endpoints(&self) -> bool {
        matches!(self, Sandbox::Netns { .. } | Sandbox::Runtime)
    }

    /// Docker's name for the mode: bridge, none, host, container:NAME.
    pub fn mode_name(&self) -> String {
        match self {
            Sandbox::Netns { .. } | Sandbox::Runtime => "bridge".into(),
            Sandbox::Isolated { .. } => "none".into(),
            Sandbox::Host => "host".into(),
            Sandbox::Shared { container } => format!("container:{container}"),
        }
    }
}

/// Where the container side of an endpoint's veth goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// Created inside the sandbox's namespace as `ifname`, configured by
    /// netd (address, routes).
    #[default]
    InSandbox,
    /// Left on the host as `peer`, for the runtime to move and configure
    /// (Docker's `Join` returns its name).
    OnHost { peer: String },
}

/// One interface of a container on one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// The caller's id for it (Docker's endpoint id), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub network: String,
    /// Name inside the container: eth0, eth1, ... (CNI's `CNI_IFNAME`).
    pub ifname: String,
    pub ip: IpAddr,
    /// The IPv6 address on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpAddr>,
    pub mac: String,
    pub host_veth: String,
    pub host_ifindex: u32,
    #[serde(default)]
    pub placement: Placement,
}

/// `hostname`, DNS servers and extra hosts: what goes into the generated
/// `hosts` and `resolv.conf`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NameConfig {
    pub hostname: String,
    pub dns: Vec<IpAddr>,
    pub extra_hosts: Vec<(String, IpAddr)>,
}

/// Where a container is in its life cycle. A record is written as
/// `Creating` before any kernel object exists, so that a crash halfway
/// through an add is found and rolled back at the next start.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Ready,
}

/// A container: a sandbox and its endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Container {
    pub id: ContainerId,
    pub name: String,
    pub sandbox: Sandbox,
    pub endpoints: Vec<Endpoint>,
    pub names: NameConfig,
    pub phase: Phase,
}

impl Container {
    /// The first interface (eth0), which carries the default route.
    pub fn primary(&self) -> Option<&Endpoint> {
        self.endpoints.first()
    }

    pub fn endpoint_on(&self, network: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.network == network)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => netd_common::IPPROTO_TCP,
            Proto::Udp => netd_common::IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    /// Ports in the range (never 0).
    pub fn count(self) -> u32 {
        u32::from(self.end.saturating_sub(self.start)) + 1
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One published port or port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Unspecified (0.0.0.0): every host address, of both families
    /// unless `ipv4_only`; an IPv6 address (`::` for all of them): that
    /// family only.
    pub host_ip: IpAddr,
    pub host_ports: PortRange,
    /// The container's IPv4 address: it names the endpoint, whose IPv6
    /// address (if any) the IPv6 side of the mapping reaches.
    pub container_ip: IpAddr,
    pub container_ports: PortRange,
    pub proto: Proto,
    /// A 0.0.0.0 given as such (Docker's `-p 0.0.0.0:8080:80`): every
    /// host IPv4 address and no IPv6 one. Absent in records of earlier
    /// versions, where 0.0.0.0 meant both families, as it still does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv4_only: bool,
}

impl PortMapping {
    /// The host address it binds in each family, (IPv4, IPv6); an
    /// unspecified one is every address of that family.
    pub fn host_binds(&self) -> (Option<IpAddr>, Option<IpAddr>) {
        match self.host_ip {
            IpAddr::V6(_) => (None, Some(self.host_ip)),
            ip if ip.is_unspecified() && !self.ipv4_only => {
                (Some(ip), Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
            }
            ip => (Some(ip), None),
        }
    }

    /// Whether the host address is written out (0.0.0.0 only when given
    /// as such), and how.
    fn host_prefix(&self) -> Option<String> {
        match self.host_ip {
            IpAddr::V6(ip) => Some(format!("[{ip}]")),
            ip if ip.is_unspecified() && !self.ipv4_only => None,
            ip => Some(ip.to_string()),
        }
    }

    /// The store key and the identity of a mapping: its host side,
    /// `[HOSTIP:]PORT[-END]/proto` (an IPv6 HOSTIP in brackets).
    pub fn host_side(&self) -> String {
        match self.host_prefix() {
            None => format!("{}/{}", self.host_ports, self.proto),
            Some(ip) => format!("{ip}:{}/{}", self.host_ports, self.proto),
        }
    }

    /// Whether `other`, as `portmap rm` was given it, names this mapping:
    /// itself, or, without a host address, the one on 0.0.0.0 written
    /// out (only one of the two can exist: they conflict).
    pub fn named_by(&self, other: &PortMapping) -> bool {
        self == other
            || (self.ipv4_only
                && !other.ipv4_only
                && *self
                    == PortMapping {
                        ipv4_only: true,
                        ..other.clone()
                    })
    }

    /// `named_by` for a host side alone (`[HOSTIP:]PORT[-END]/proto`).
    pub fn side_named_by(&self, side: &str) -> bool {
        let own = self.host_side();
        own == side || (self.ipv4_only && own.strip_prefix("0.0.0.0:") == Some(side))
    }

    /// Two mappings cannot coexist when their host sides meet: same
    /// protocol, overlapping ports, and, in a family both bind, addresses
    /// that meet (either a wildcard, or the same address).
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        let meet = |a: Option<IpAddr>, b: Option<IpAddr>| match (a, b) {
            (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
            _ => false,
        };
        let (mine, theirs) = (self.host_binds(), other.host_binds());
        self.proto == other.proto
            && self.host_ports.overlaps(other.host_ports)
            && (meet(mine.0, theirs.0) || meet(mine.1, theirs.1))
    }

    /// Whether `socket` (a host process's) would lose traffic to this
    /// mapping: same protocol, a port in the range, and addresses that
    /// meet in a family the mapping binds (an IPv6 wildcard socket
    /// normally takes IPv4 too; an IPv4-mapped address is IPv4).
    pub fn takes_from(&self, socket: &HostSocket) -> bool {
        let ports = self.host_ports;
        if socket.proto != self.proto || socket.port < ports.start || socket.port > ports.end {
            return false;
        }
        let (v4, v6) = self.host_binds();
        let meets = |own: Option<IpAddr>, addr: IpAddr| {
            own.is_some_and(|own| own.is_unspecified() || addr.is_unspecified() || own == addr)
        };
        match socket.addr {
            IpAddr::V4(_) => meets(v4, socket.addr),
            IpAddr::V6(ip) if ip.is_unspecified() => v4.is_some() || v6.is_some(),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(mapped) => meets(v4, IpAddr::V4(mapped)),
                None => meets(v6, socket.addr),
            },
        }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_prefix() {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ports, self.container_ip, self.container_ports, self.proto
        )
    }
}

/// An address pool a runtime's IPAM asked for (Docker's
/// `IpamDriver.RequestPool`), before and while a network uses it: its
/// subnet and the addresses handed out of it and not released yet. The
/// runtime is the one that knows which addresses it holds (Docker calls
/// `ReleaseAddress` for each), so they are recorded here, not derived
/// from endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddressPoolLease {
    /// The caller's handle for it: the subnet in CIDR form.
    pub id: String,
    pub subnet: IpNetwork,
    /// The address handed out as the gateway, if one was.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Every address handed out and not released, the gateway included.
    #[serde(default)]
    pub addresses: std::collections::BTreeSet<IpAddr>,
}

/// A published mapping and the container it belongs to (removed with it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortMap {
    pub mapping: PortMapping,
    pub container: ContainerId,
}

/// A listening TCP socket or a bound, unconnected UDP socket of a host
/// process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSocket {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

/// The unspecified IPv4 address: a mapping on every host address.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// A container for unit tests: c1 on `bridge` at 172.17.0.2.
#[cfg(test)]
pub fn sample_container() -> Container {
    Container {
        id: ContainerId("abc".into()),
        name: "c1".into(),
        sandbox: Sandbox::Netns {
            path: "/run/netns/c1".into(),
            owner: Owner::Netd,
        },
        endpoints: vec![Endpoint {
            id: None,
            network: "bridge".into(),
            ifname: "eth0".into(),
            ip: "172.17.0.2".parse().unwrap(),
            ip6: None,
            mac: "02:42:ac:11:00:02".into(),
            host_veth: "vethabc".into(),
            host_ifindex: 7,
            placement: Placement::InSandbox,
        }],
        names: NameConfig::default(),
        phase: Phase::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host_ip: &str, ports: (u16, u16), proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: host_ip.parse().unwrap(),
            host_ports: PortRange {
                start: ports.0,
                end: ports.1,
            },
            container_ip: "172.17.0.3".parse().unwrap(),
            container_ports: PortRange {
                start: ports.0,
                end: ports.1,
            },
            proto,
            ipv4_only: false,
        }
    }

    #[test]
    fn conflicts_follow_host_ip_port_and_protocol() {
        let a = m("0.0.0.0", (8088, 8088), Proto::Tcp);
        let b = m("127.0.0.1", (8088, 8088), Proto::Tcp);
        let c = m("0.0.0.0", (8088, 8088), Proto::Udp);
        let d = m("0.0.0.0", (8080, 8090), Proto::Tcp);
        let e = m("127.0.0.1", (9000, 9000), Proto::Tcp);
        let f = m("127.0.0.2", (9000, 9000), Proto::Tcp);
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
        assert!(a.conflicts_with(&d));
        assert!(!e.conflicts_with(&f));
    }

    #[test]
    fn mappings_meet_sockets_by_address_port_and_protocol() {
        let ssh = HostSocket {
            addr: "127.0.0.1".parse().unwrap(),
            port: 22,
            proto: Proto::Tcp,
        };
        assert!(m("0.0.0.0", (22, 22), Proto::Tcp).takes_from(&ssh));
        assert!(m("0.0.0.0", (20, 30), Proto::Tcp).takes_from(&ssh));
        assert!(m("127.0.0.1", (22, 22), Proto::Tcp).takes_from(&ssh));
        assert!(!m("127.0.0.2", (22, 22), Proto::Tcp).takes_from(&ssh));
        assert!(!m("0.0.0.0", (22, 22), Proto::Udp).takes_from(&ssh));
        assert!(!m("0.0.0.0", (23, 23), Proto::Tcp).takes_from(&ssh));
        let any6 = HostSocket {
            addr: "::".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert!(m("198.18.0.1", (80, 80), Proto::Tcp).takes_from(&any6));
        let on6 = HostSocket {
            addr: "2001:2::1".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert!(m("0.0.0.0", (80, 80), Proto::Tcp).takes_from(&on6));
        assert!(m("::", (80, 80), Proto::Tcp).takes_from(&on6));
        assert!(m("2001:2::1", (80, 80), Proto::Tcp).takes_from(&on6));
        assert!(!m("2001:2::9", (80, 80), Proto::Tcp).takes_from(&on6));
        assert!(!m("198.18.0.1", (80, 80), Proto::Tcp).takes_from(&on6));
        let mut v4_only = m("0.0.0.0", (80, 80), Proto::Tcp);
        v4_only.ipv4_only = true;
        assert!(!v4_only.takes_from(&on6));
        assert!(!m("::", (22, 22), Proto::Tcp).takes_from(&ssh));
    }

    #[test]
    fn a_side_without_address_names_the_ipv4_only_wildcard() {
        let mut v4 = m("0.0.0.0", (80, 80), Proto::Tcp);
        v4.ipv4_only = true;
        let both = m("0.0.0.0", (80, 80), Proto::Tcp);
        assert!(v4.named_by(&both));
        assert!(v4.named_by(&v4.clone()));
        assert!(v4.side_named_by("80/tcp"));
        assert!(v4.side_named_by("0.0.0.0:80/tcp"));
        assert!(!both.named_by(&v4));
        assert!(!both.side_named_by("0.0.0.0:80/tcp"));
        assert!(!m("::", (80, 80), Proto::Tcp).side_named_by("80/tcp"));
    }

    #[test]
    fn families_decide_v6_conflicts() {
        let both = m("0.0.0.0", (80, 80), Proto::Tcp);
        let mut v4 = m("0.0.0.0", (80, 80), Proto::Tcp);
        v4.ipv4_only = true;
        let any6 = m("::", (80, 80), Proto::Tcp);
        let one6 = m("2001:2::1", (80, 80), Proto::Tcp);
        let other6 = m("2001:2::2", (80, 80), Proto::Tcp);
        let lo6 = m("::1", (80, 80), Proto::Tcp);
        assert!(both.conflicts_with(&any6));
        assert!(both.conflicts_with(&one6));
        assert!(both.conflicts_with(&v4));
        assert!(!v4.conflicts_with(&any6));
        assert!(!v4.conflicts_with(&one6));
        assert!(any6.conflicts_with(&one6));
        assert!(!one6.conflicts_with(&other6));
        assert!(!lo6.conflicts_with(&one6));
        assert!(!m("127.0.0.1", (80, 80), Proto::Tcp).conflicts_with(&any6));
    }

    #[test]
    fn host_side_is_the_identity() {
        assert_eq!(m("0.0.0.0", (80, 80), Proto::Tcp).host_side(), "80/tcp");
        assert_eq!(
            m("127.0.0.1", (80, 82), Proto::Udp).host_side(),
            "127.0.0.1:80-82/udp"
        );
        assert_eq!(
            m("2001:2::1", (80, 80), Proto::Tcp).host_side(),
            "[2001:2::1]:80/tcp"
        );
        assert_eq!(m("::", (80, 80), Proto::Tcp).host_side(), "[::]:80/tcp");
        let mut v4 = m("0.0.0.0", (80, 80), Proto::Tcp);
        v4.ipv4_only = true;
        assert_eq!(v4.host_side(), "0.0.0.0:80/tcp");
        assert_eq!(v4.to_string(), "0.0.0.0:80:172.17.0.3:80/tcp");
    }
}
