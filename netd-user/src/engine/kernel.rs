//! What the engine needs of the kernel, as narrow interfaces: the
//! datapath's maps and program attachments, links/addresses/routes, and
//! namespaces. `crate::kernel` implements them on Linux (aya, rtnetlink,
//! nsfs); `fake` implements them in memory for the engine's unit tests.
//! Values cross in the engine's types (`IpAddr`, host byte order); byte
//! order and map layouts are the implementations' business.

use std::{collections::HashSet, net::IpAddr, path::Path, sync::Arc};

use async_trait::async_trait;
use ipnetwork::IpNetwork;
use netd_common::{Counter, StatIndex};

use super::{
    error::Result,
    model::{HostSocket, PortRange, Proto},
};

/// A published port entry: one host port to one container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortEntry {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub proto: Proto,
    pub container_ip: IpAddr,
    /// Of the host address's family: a mapping's IPv6 side reaches the
    /// container's IPv6 address.
    pub container_port: u16,
}

/// A container port that a mapping publishes (its UDP orphans are
/// dropped, see the datapath's `NETD_SERVICES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Service {
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub proto: Proto,
}

/// What the datapath knows of an endpoint: delivery to its address, and
/// what may enter from its host veth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathEndpoint {
    pub ip: IpAddr,
    /// The IPv6 address on a dual-stack network: the only global IPv6
    /// source allowed in from the veth.
    pub ip6: Option<IpAddr>,
    pub mac: [u8; 6],
    pub veth_ifindex: u32,
    pub network_id: u32,
    pub gateway: IpAddr,
    pub gateway_mac: [u8; 6],
    /// `netd_common::net_flags`.
    pub flags: u32,
}

/// What the datapath knows of a network's bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathBridge {
    pub ifindex: u32,
    pub network_id: u32,
    pub gateway: IpAddr,
    /// `netd_common::net_flags`, `ADOPTED` included.
    pub flags: u32,
}

/// The eBPF datapath: maps and program attachments.
pub trait Datapath: Send + Sync {
    fn set_endpoint(&self, ep: &DatapathEndpoint) -> Result<()>;
    /// Removes both entries of an endpoint; absent ones are fine.
    fn remove_endpoint(&self, ip: IpAddr, ip6: Option<IpAddr>, veth_ifindex: u32) -> Result<()>;
    /// Attaches the container program to a host veth (pinned link).
    fn attach_veth(&self, ifname: &str) -> Result<()>;
    /// Drops a veth's pinned link (detaching if it still exists).
    fn detach_veth(&self, ifname: &str) -> Result<()>;
    /// Removes pinned veth links whose veth is not in `owned`.
    fn unpin_orphan_veth_links(&self, owned: &HashSet<String>) -> Result<()>;
    fn set_bridge(&self, bridge: &DatapathBridge) -> Result<()>;
    fn insert_ports(&self, entries: &[PortEntry]) -> Result<()>;
    /// Removes entries by their host side; absent ones are fine.
    fn remove_ports(&self, entries: &[PortEntry]) -> Result<()>;
    /// Host sides (ip, port, proto) of every entry in the kernel.
    fn port_keys(&self) -> Result<Vec<(IpAddr, u16, Proto)>>;
    fn sync_services(&self, services: &HashSet<Service>) -> Result<()>;
    fn sync_host_addrs(&self, addrs: &[IpAddr]) -> Result<()>;
    fn stats(&self) -> Result<Vec<(StatIndex, Counter)>>;
}

/// Link kinds netd tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
    Other,
}

/// Links, addresses and routes: on the host (the daemon's namespace), and
/// inside a container's namespace where a path is given.
#[async_trait]
pub trait Links: Send + Sync {
    async fn link_index(&self, name: &str) -> Result<Option<u32>>;
    async fn link_kind(&self, name: &str) -> Result<Option<LinkKind>>;
    async fn link_mac(&self, index: u32) -> Result<[u8; 6]>;
    /// Creates bridge `name` (with `mac`) if missing, brings it up.
    async fn ensure_bridge(&self, name: &str, mac: [u8; 6]) -> Result<u32>;
    /// Adds `addr` to link `index`; present already is fine.
    async fn add_address(&self, index: u32, addr: IpNetwork) -> Result<()>;
    /// Removes `ip` from link `name`; gone already is fine.
    async fn delete_address(&self, name: &str, ip: IpAddr) -> Result<()>;
    /// Deletes link `name`; gone already is fine.
    async fn delete_link(&self, name: &str) -> Result<()>;
    /// Names of the links enslaved to any of `bridges`.
    async fn ports_of(&self, bridges: &[u32]) -> Result<Vec<String>>;
    /// A veth pair: `host` on `bridge` and up; the peer `peer` with
    /// `peer_mac`, inside `netns` if given, else on the host. Returns the
    /// host side's ifindex.
    async fn add_veth(
        &self,
        host: &str,
        bridge: u32,
        peer: &str,
        peer_mac: [u8; 6],
        netns: Option<&Path>,
    ) -> Result<u32>;
    /// Every address of the host, loopback excluded.
    async fn host_addresses(&self) -> Result<Vec<IpAddr>>;
    /// The interface of the IPv4 default route.
    async fn default_route_link(&self) -> Result<String>;
    /// Inside `netns`: `lo` up.
    async fn loopback_up(&self, netns: &Path) -> Result<()>;
    /// Inside `netns`: `ifname` up with `addrs` (an IPv4 and, on a
    /// dual-stack network, an IPv6 one), and a default route via each of
    /// `gateways` (one per family).
    async fn configure_interface(
        &self,
        netns: &Path,
        ifname: &str,
        addrs: &[IpNetwork],
        gateways: &[IpAddr],
    ) -> Result<()>;
    /// Inside `netns`: the IPv4 default route via `gateway`, or none.
    async fn replace_default_route(&self, netns: &Path, gateway: Option<IpAddr>) -> Result<()>;
    /// Inside `netns`: the IPv6 default route via `gateway`, or none.
    async fn replace_default_route6(&self, netns: &Path, gateway: Option<IpAddr>) -> Result<()>;
}

/// Named network namespaces (bind-mounted nsfs files).
pub trait Namespaces: Send + Sync {
    fn create(&self, path: &Path) -> Result<()>;
    /// Unmounts and removes; gone already is fine.
    fn delete(&self, path: &Path) -> Result<()>;
    /// A namespace is mounted at `path`.
    fn is_mounted(&self, path: &Path) -> bool;
    /// Something (a namespace or not) is at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// Facts about the host the engine asks at publish time.
pub trait Host: Send + Sync {
    /// Listening TCP and bound UDP sockets of host processes.
    fn listening_sockets(&self) -> Result<Vec<HostSocket>>;
    /// Where a published port whose host port is left open is taken
    /// from (the host's ephemeral range, as Docker does).
    fn ephemeral_ports(&self) -> Result<PortRange>;
}

/// The kernel side, as the engine holds it.
#[derive(Clone)]
pub struct Kernel {
    pub datapath: Arc<dyn Datapath>,
    pub links: Arc<dyn Links>,
    pub netns: Arc<dyn Namespaces>,
    pub host: Arc<dyn Host>,
}
