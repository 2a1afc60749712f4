//! Endpoints: one interface of a container on one network. The address
//! comes from IPAM (derived from every endpoint on the network), the MAC
//! from the address (Docker's rule), the interfaces from the network's
//! driver. `connect`/`disconnect` add and remove them on a running
//! container and move its default route when its gateway changes.

use std::{collections::HashSet, net::IpAddr, path::Path};

use tracing::info;

use super::lookup::no_such_network;
use crate::engine::{
    Engine,
    driver::EndpointSetup,
    error::{Error, Result},
    events::Event,
    ids::random_id,
    ipam,
    model::{Container, Endpoint, Placement, Sandbox},
    requests::{ContainerRef, EndpointRef, EndpointRequest},
    store::{Change, State},
};

/// Picks the address and names of a new endpoint (nothing is created).
/// `taken_ifnames`: the container's interfaces so far.
pub(super) fn plan_endpoint(
    state: &State,
    req: &EndpointRequest,
    taken_ifnames: &[&str],
) -> Result<Endpoint> {
    let net = state
        .networks
        .get(&req.network)
        .ok_or_else(|| no_such_network(&req.network))?;
    let on_net = || {
        state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == net.name)
    };
    let used: HashSet<IpAddr> = on_net().map(|e| e.ip).collect();
    if let Some(ip) = req.ip.filter(IpAddr::is_ipv6) {
        return Err(Error::invalid(format!(
            "{ip} is an IPv6 address: give it as the IPv6 address (--ip6)"
        )));
    }
    let ip = ipam::allocate(net.subnet, net.gateway, &used, req.ip)?;
    let ip6 = match (net.subnet6, net.gateway6) {
        (Some(subnet6), Some(gateway6)) => {
            let used6: HashSet<IpAddr> = on_net().filter_map(|e| e.ip6).collect();
            if let Some(ip) = req.ip6.filter(IpAddr::is_ipv4) {
                return Err(Error::invalid(format!(
                    "{ip} is an IPv4 address where the IPv6 address is expected"
                )));
            }
            Some(ipam::allocate(subnet6, gateway6, &used6, req.ip6)?)
        }
        _ => match req.ip6 {
            Some(ip) => {
                return Err(Error::invalid(format!(
                    "network {} has no IPv6 subnet for address {ip}: create it with --ipv6",
                    net.name
                )));
            }
            None => None,
        },
    };
    let ifname = match &req.ifname {
        Some(name) if taken_ifnames.contains(&name.as_str()) => {
            return Err(Error::exists(format!(
                "the container already has an interface {name}"
            )));
        }
        Some(name) => name.clone(),
        None => (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !taken_ifnames.contains(&n.as_str()))
            .unwrap_or_default(),
    };
    let host_veth = format!("veth{}", &random_id()?[..7]);
    let placement = if req.peer_on_host {
        Placement::OnHost {
            peer: format!("{host_veth}p"),
        }
    } else {
        Placement::InSandbox
    };
    Ok(Endpoint {
        id: req.id.clone(),
        network: net.name.clone(),
        ifname,
        ip,
        ip6,
        mac: ipam::format_mac(ipam::mac_for(ip)),
        host_veth,
        host_ifindex: 0,
        placement,
    })
}

/// The gateway a container's default route goes via: that of its first
/// endpoint on a network that is not internal (eth0 unless that one is
/// internal or gone), as Docker picks its gateway endpoint.
pub(super) fn gateway_of(state: &State, c: &Container) -> Option<IpAddr> {
    c.endpoints
        .iter()
        .filter_map(|ep| state.networks.get(&ep.network))
        .find(|net| !net.internal)
        .map(|net| net.gateway)
}

/// The IPv6 default route's gateway: that of the same network as the IPv4
/// one (`gateway_of`), if it is dual-stack.
pub(super) fn gateway6_of(state: &State, c: &Container) -> Option<IpAddr> {
    c.endpoints
        .iter()
        .filter_map(|ep| state.networks.get(&ep.network))
        .find(|net| !net.internal)
        .and_then(|net| net.gateway6)
}

impl Engine {
    /// Creates an endpoint's interfaces through its network's driver;
    /// returns the host side's ifindex.
    pub(super) async fn setup_endpoint(
        &self,
        netns: Option<&Path>,
        ep: &Endpoint,
        default_route: bool,
    ) -> Result<u32> {
        let net = self.network(&ep.network)?;
        let how = EndpointSetup {
            netns,
            default_route,
        };
        self.driver(&net.driver)?
            .setup_endpoint(&net, ep, how)
            .await
    }

    /// `network connect`: a new endpoint for a running container (for a
    /// sandbox only the runtime sees, with the peer left on the host).
    pub async fn connect(&self, r: &ContainerRef, req: EndpointRequest) -> Result<Container> {
        let _guard = self.lock().await;
        let mut c = self.find_container(r)?;
        let container = c.name.clone();
        let fits = match c.sandbox {
            Sandbox::Netns { .. } => true,
            Sandbox::Runtime => req.peer_on_host,
            _ => false,
        };
        if !fits {
            return Err(Error::invalid(format!(
                "container {container} has no network namespace of its own to connect (mode {})",
                c.sandbox.mode_name()
            )));
        }
        if c.endpoint_on(&req.network).is_some() {
            return Err(Error::exists(format!(
                "container {container} is already connected to network {}",
                req.network
            )));
        }
        let taken: Vec<&str> = c.endpoints.iter().map(|e| e.ifname.as_str()).collect();
        let mut ep = self.read(|s| plan_endpoint(s, &req, &taken))?;
        let gateway_before = self.read(|s| (gateway_of(s, &c), gateway6_of(s, &c)));
        let netns = c.sandbox.netns().map(Path::to_path_buf);
        ep.host_ifindex = match self.setup_endpoint(netns.as_deref(), &ep, false).await {
            Ok(index) => index,
            Err(e) => {
                let _ = self.teardown_endpoint(&ep).await;
                return Err(e);
            }
        };
        c.endpoints.push(ep.clone());
        let moved = self.move_default_route(&c, gateway_before).await;
        if let Err(e) = moved.and_then(|()| self.commit(vec![Change::PutContainer(c.clone())])) {
            let _ = self.teardown_endpoint(&ep).await;
            return Err(e);
        }
        info!(network = %req.network, container, "container connected");
        self.emit(Event::EndpointAdded {
            container: c.clone(),
            endpoint: ep,
        });
        Ok(c)
    }

    /// `network disconnect`: removes one endpoint of a container.
    pub async fn disconnect(&self, r: &ContainerRef, which: &EndpointRef) -> Result<Container> {
        let _guard = self.lock().await;
        if let EndpointRef::Network(network) = which {
            self.network(network)?;
        }
        let mut c = self.find_container(r)?;
        let container = c.name.clone();
        let found = c.endpoints.iter().position(|e| match which {
            EndpointRef::Network(n) => &e.network == n,
            EndpointRef::Ifname(n) => &e.ifname == n,
            EndpointRef::Id(id) => e.id.as_ref() == Some(id),
        });
        let Some(pos) = found else {
            return Err(Error::not_found(match which {
                EndpointRef::Network(n) => {
                    format!("container {container} is not connected to network {n}")
                }
                EndpointRef::Ifname(n) => format!("container {container} has no interface {n}"),
                EndpointRef::Id(id) => format!("container {container} has no endpoint {id}"),
            }));
        };
        let network = c.endpoints[pos].network.clone();
        let ep = c.endpoints[pos].clone();
        let stale: Vec<_> = self.read(|s| {
            s.portmaps
                .values()
                .filter(|p| p.container == c.id && p.mapping.container_ip == ep.ip)
                .cloned()
                .collect()
        });
        let gateway_before = self.read(|s| (gateway_of(s, &c), gateway6_of(s, &c)));
        self.remove_ports(&stale)?;
        self.teardown_endpoint(&ep).await?;
        c.endpoints.remove(pos);
        // One commit: the container without the endpoint, and the ports
        // that pointed at it.
        let mut changes: Vec<Change> = stale
            .iter()
            .map(|p| Change::DeletePortmap(p.mapping.host_side()))
            .collect();
        changes.push(Change::PutContainer(c.clone()));
        self.commit(changes)?;
        self.sync_services()?;
        self.move_default_route(&c, gateway_before).await?;
        info!(network, container, "container disconnected");
        if !stale.is_empty() {
            self.emit(Event::PortsUnpublished(stale));
        }
        self.emit(Event::EndpointRemoved {
            container: c.clone(),
            endpoint: ep,
        });
        Ok(c)
    }

    /// After a connect or disconnect: points the default route at the
    /// container's gateway if that changed (so a container that loses its
    /// default network keeps a way out through another one).
    async fn move_default_route(
        &self,
        c: &Container,
        before: (Option<IpAddr>, Option<IpAddr>),
    ) -> Result<()> {
        let after = self.read(|s| (gateway_of(s, c), gateway6_of(s, c)));
        let Some(netns) = c.sandbox.netns() else {
            return Ok(());
        };
        let moving = |e: crate::engine::error::Error| {
            e.context(format!("moving the default route of container {}", c.name))
        };
        let links = &self.kernel().links;
        if after.0 != before.0 {
            links
                .replace_default_route(netns, after.0)
                .await
                .map_err(moving)?;
        }
        if after.1 != before.1 {
            links
                .replace_default_route6(netns, after.1)
                .await
                .map_err(moving)?;
        }
        Ok(())
    }

    /// Detaches and deletes an endpoint's interfaces now.
    pub(super) async fn teardown_endpoint(&self, ep: &Endpoint) -> Result<()> {
        let driver = match self.network(&ep.network) {
            Ok(net) => self.driver(&net.driver)?,
            Err(_) => self.inner.bridge.clone(),
        };
        driver.teardown_endpoint(ep).await
    }
}
