//! In-memory fakes of the kernel interfaces, for the engine's unit tests:
//! they record what exists (links, addresses, namespaces, datapath
//! entries) and can be told to fail a step, so that tests check the
//! engine's decisions and its rollback without root.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use ipnetwork::IpNetwork;
use netd_common::{Counter, StatIndex};

use super::{
    error::{Error, Result},
    kernel::{
        Datapath, DatapathBridge, DatapathEndpoint, Host, Kernel, LinkKind, Links, Namespaces,
        PortEntry, Service,
    },
    model::{HostSocket, PortRange, Proto},
};

/// What the fake kernel holds.
#[derive(Debug, Default)]
pub struct World {
    /// name -> (ifindex, kind, master)
    pub links: BTreeMap<String, (u32, LinkKind, Option<u32>)>,
    pub addresses: BTreeSet<(String, IpNetwork)>,
    pub namespaces: BTreeSet<PathBuf>,
    /// (namespace, interface) pairs created inside namespaces.
    pub inside: BTreeSet<(PathBuf, String)>,
    /// host veth -> where its peer is (namespace, name).
    pub pairs: BTreeMap<String, (Option<PathBuf>, String)>,
    pub endpoints: BTreeMap<IpAddr, DatapathEndpoint>,
    pub attached: BTreeSet<String>,
    pub bridges: BTreeMap<u32, DatapathBridge>,
    pub ports: BTreeMap<(IpAddr, u16, Proto), PortEntry>,
    pub services: HashSet<Service>,
    pub host_addrs: Vec<IpAddr>,
    /// (namespace, interface) -> the addresses and default-route
    /// gateways `configure_interface` was given.
    pub configured: BTreeMap<(PathBuf, String), (Vec<IpNetwork>, Vec<IpAddr>)>,
    /// namespace -> the IPv6 default route's gateway, as last replaced.
    pub routes6: BTreeMap<PathBuf, Option<IpAddr>>,
    pub listening: Vec<HostSocket>,
    next_index: u32,
    /// A step whose next call fails ("add_veth", "attach_veth", ...).
    pub fail: Option<&'static str>,
    /// When set, `add_veth` waits for it (a slow kernel step).
    pub gate: Option<Arc<tokio::sync::Notify>>,
    /// `add_veth` is waiting at the gate.
    pub waiting: bool,
}

#[derive(Clone, Default)]
pub struct FakeKernel {
    pub world: Arc<Mutex<World>>,
}

impl FakeKernel {
    pub fn kernel(&self) -> Kernel {
        Kernel {
            datapath: Arc::new(self.clone()),
            links: Arc::new(self.clone()),
            netns: Arc::new(self.clone()),
            host: Arc::new(self.clone()),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut world = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut world)
    }

    fn step(&self, name: &'static str) -> Result<()> {
        self.with(|w| {
            if w.fail == Some(name) {
                w.fail = None;
                return Err(Error::kernel(anyhow::anyhow!("injected failure of {name}")));
            }
            Ok(())
        })
    }

    fn add_link(w: &mut World, name: &str, kind: LinkKind, master: Option<u32>) -> u32 {
        w.next_index += 1;
        let index = w.next_index + 100;
        w.links.insert(name.into(), (index, kind, master));
        index
    }
}

impl Datapath for FakeKernel {
    fn set_endpoint(&self, ep: &DatapathEndpoint) -> Result<()> {
        self.step("set_endpoint")?;
        self.with(|w| w.endpoints.insert(ep.ip, *ep));
        Ok(())
    }

    fn remove_endpoint(&self, ip: IpAddr, _ip6: Option<IpAddr>, _veth_ifindex: u32) -> Result<()> {
        self.with(|w| w.endpoints.remove(&ip));
        Ok(())
    }

    fn attach_veth(&self, ifname: &str) -> Result<()> {
        self.step("attach_veth")?;
        self.with(|w| w.attached.insert(ifname.into()));
        Ok(())
    }

    fn detach_veth(&self, ifname: &str) -> Result<()> {
        self.with(|w| w.attached.remove(ifname));
        Ok(())
    }

    fn unpin_orphan_veth_links(&self, owned: &HashSet<String>) -> Result<()> {
        self.with(|w| w.attached.retain(|v| owned.contains(v)));
        Ok(())
    }

    fn set_bridge(&self, bridge: &DatapathBridge) -> Result<()> {
        self.with(|w| w.bridges.insert(bridge.ifindex, *bridge));
        Ok(())
    }

    fn insert_ports(&self, entries: &[PortEntry]) -> Result<()> {
        self.step("insert_ports")?;
        self.with(|w| {
            for e in entries {
                w.ports.insert((e.host_ip, e.host_port, e.proto), *e);
            }
        });
        Ok(())
    }

    fn remove_ports(&self, entries: &[PortEntry]) -> Result<()> {
        self.with(|w| {
            for e in entries {
                w.ports.remove(&(e.host_ip, e.host_port, e.proto));
            }
        });
        Ok(())
    }

    fn port_keys(&self) -> Result<Vec<(IpAddr, u16, Proto)>> {
        Ok(self.with(|w| w.ports.keys().copied().collect()))
    }

    fn sync_services(&self, services: &HashSet<Service>) -> Result<()> {
        self.with(|w| w.services = services.clone());
        Ok(())
    }

    fn sync_host_addrs(&self, _addrs: &[IpAddr]) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Result<Vec<(StatIndex, Counter)>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Links for FakeKernel {
    async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.with(|w| w.links.get(name).map(|l| l.0)))
    }

    async fn link_kind(&self, name: &str) -> Result<Option<LinkKind>> {
        Ok(self.with(|w| w.links.get(name).map(|l| l.1)))
    }

    async fn link_mac(&self, _index: u32) -> Result<[u8; 6]> {
        Ok([2, 0, 0, 0, 0, 1])
    }

    async fn ensure_bridge(&self, name: &str, _mac: [u8; 6]) -> Result<u32> {
        Ok(self.with(|w| match w.links.get(name) {
            Some(l) => l.0,
            None => Self::add_link(w, name, LinkKind::Bridge, None),
        }))
    }

    async fn add_address(&self, index: u32, addr: IpNetwork) -> Result<()> {
        self.with(|w| {
            let name = w
                .links
                .iter()
                .find(|(_, l)| l.0 == index)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            w.addresses.insert((name, addr));
        });
        Ok(())
    }

    async fn delete_address(&self, name: &str, ip: IpAddr) -> Result<()> {
        self.with(|w| w.addresses.retain(|(n, a)| !(n == name && a.ip() == ip)));
        Ok(())
    }

    async fn delete_link(&self, name: &str) -> Result<()> {
        self.with(|w| {
            w.links.remove(name);
            // A veth's peer goes with it.
            match w.pairs.remove(name) {
                Some((Some(ns), peer)) => {
                    w.inside.remove(&(ns, peer));
                }
                Some((None, peer)) => {
                    w.links.remove(&peer);
                }
                None => {}
            }
        });
        Ok(())
    }

    async fn ports_of(&self, bridges: &[u32]) -> Result<Vec<String>> {
        Ok(self.with(|w| {
            w.links
                .iter()
                .filter(|(_, l)| l.2.is_some_and(|m| bridges.contains(&m)))
                .map(|(n, _)| n.clone())
                .collect()
        }))
    }

    async fn add_veth(
        &self,
        host: &str,
        bridge: u32,
        peer: &str,
        _peer_mac: [u8; 6],
        netns: Option<&Path>,
    ) -> Result<u32> {
        self.step("add_veth")?;
        if let Some(gate) = self.with(|w| w.gate.clone()) {
            self.with(|w| w.waiting = true);
            gate.notified().await;
        }
        self.with(|w| {
            match netns {
                Some(ns) => {
                    if !w.inside.insert((ns.to_path_buf(), peer.into())) {
                        return Err(Error::kernel(format!(
                            "creating veth pair {host}/{peer}: File exists"
                        )));
                    }
                }
                None => {
                    Self::add_link(w, peer, LinkKind::Veth, None);
                }
            }
            w.pairs
                .insert(host.into(), (netns.map(Path::to_path_buf), peer.into()));
            Ok(Self::add_link(w, host, LinkKind::Veth, Some(bridge)))
        })
    }

    async fn host_addresses(&self) -> Result<Vec<IpAddr>> {
        Ok(self.with(|w| w.host_addrs.clone()))
    }

    async fn default_route_link(&self) -> Result<String> {
        Ok("uplink0".into())
    }

    async fn loopback_up(&self, _netns: &Path) -> Result<()> {
        Ok(())
    }

    async fn configure_interface(
        &self,
        netns: &Path,
        ifname: &str,
        addrs: &[IpNetwork],
        gateways: &[IpAddr],
    ) -> Result<()> {
        self.step("configure_interface")?;
        self.with(|w| {
            w.configured.insert(
                (netns.to_path_buf(), ifname.into()),
                (addrs.to_vec(), gateways.to_vec()),
            )
        });
        Ok(())
    }

    async fn replace_default_route(&self, _netns: &Path, _gateway: Option<IpAddr>) -> Result<()> {
        Ok(())
    }

    async fn replace_default_route6(&self, netns: &Path, gateway: Option<IpAddr>) -> Result<()> {
        self.with(|w| w.routes6.insert(netns.to_path_buf(), gateway));
        Ok(())
    }
}

impl Namespaces for FakeKernel {
    fn create(&self, path: &Path) -> Result<()> {
        self.step("netns_create")?;
        self.with(|w| w.namespaces.insert(path.to_path_buf()));
        Ok(())
    }

    fn delete(&self, path: &Path) -> Result<()> {
        self.with(|w| {
            w.namespaces.remove(path);
            w.inside.retain(|(ns, _)| ns != path);
        });
        Ok(())
    }

    fn is_mounted(&self, path: &Path) -> bool {
        self.with(|w| w.namespaces.contains(path))
    }

    fn exists(&self, path: &Path) -> bool {
        self.is_mounted(path)
    }
}

impl Host for FakeKernel {
    fn listening_sockets(&self) -> Result<Vec<HostSocket>> {
        Ok(self.with(|w| w.listening.clone()))
    }

    fn ephemeral_ports(&self) -> Result<PortRange> {
        Ok(PortRange {
            start: 49152,
            end: 49159,
        })
    }
}
