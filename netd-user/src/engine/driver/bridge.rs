//! The bridge driver (Docker's `bridge`): a Linux bridge per network with
//! the gateway address on it; per endpoint a veth pair whose host side is
//! a port of the bridge, carrying the container program, and whose
//! container side is created directly inside the sandbox's namespace (or
//! left on the host for a runtime to move).

use std::collections::HashSet;

use async_trait::async_trait;
use ipnetwork::IpNetwork;
use tracing::warn;

use super::{EndpointSetup, NetworkDriver};
use crate::engine::{
    error::{Error, Remedy, Result},
    ipam::mac_for,
    kernel::{DatapathBridge, DatapathEndpoint, Kernel, LinkKind},
    model::{Endpoint, Network, Placement},
};

pub struct BridgeDriver {
    kernel: Kernel,
}

impl BridgeDriver {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    async fn bridge_index(&self, net: &Network) -> Result<u32> {
        self.kernel
            .links
            .link_index(&net.bridge)
            .await?
            .ok_or_else(|| {
                Error::new(
                    crate::engine::error::ErrorKind::Kernel,
                    format!("bridge {} of network {} is missing", net.bridge, net.name),
                )
            })
    }

    fn prefixed(net: &Network, ip: std::net::IpAddr) -> Result<IpNetwork> {
        IpNetwork::new(ip, net.subnet.prefix()).map_err(|e| Error::invalid(e.to_string()))
    }

    /// An IPv6 address with the network's IPv6 prefix length.
    fn prefixed6(net: &Network, ip: std::net::IpAddr) -> Result<IpNetwork> {
        let prefix = net.subnet6.map_or(64, |s| s.prefix());
        IpNetwork::new(ip, prefix).map_err(|e| Error::invalid(e.to_string()))
    }
}

#[async_trait]
impl NetworkDriver for BridgeDriver {
    async fn validate(&self, net: &mut Network, adopt: bool) -> Result<()> {
        let name = &net.bridge;
        net.adopted_bridge = match (self.kernel.links.link_kind(name).await?, adopt) {
            (None, false) => false,
            (None, true) => {
                return Err(Error::not_found(format!(
                    "there is no bridge {name} to adopt: create it first, or let netd create its own"
                )));
            }
            (Some(LinkKind::Bridge), true) => true,
            (Some(LinkKind::Bridge), false) => {
                return Err(Error::conflict(format!(
                    "bridge {name} already exists and is not netd's: adopt it explicitly (netd will never delete it), or pick another bridge name"
                ))
                .with_remedy(Remedy::AdoptBridge));
            }
            (Some(_), _) => {
                return Err(Error::conflict(format!(
                    "interface {name} exists and is not a bridge: netd never takes over another interface; pick another bridge name"
                )));
            }
        };
        Ok(())
    }

    async fn setup(&self, net: &Network) -> Result<()> {
        let links = &self.kernel.links;
        let index = links
            .ensure_bridge(&net.bridge, mac_for(net.gateway))
            .await?;
        links
            .add_address(index, Self::prefixed(net, net.gateway)?)
            .await?;
        if let Some(gateway6) = net.gateway6 {
            links
                .add_address(index, Self::prefixed6(net, gateway6)?)
                .await?;
        }
        let adopted = if net.adopted_bridge {
            netd_common::net_flags::ADOPTED
        } else {
            0
        };
        self.kernel.datapath.set_bridge(&DatapathBridge {
            ifindex: index,
            network_id: net.net_id,
            gateway: net.gateway,
            flags: net.datapath_flags() | adopted,
        })
    }

    async fn teardown(&self, net: &Network) -> Result<()> {
        if net.adopted_bridge {
            let links = &self.kernel.links;
            let v4 = links.delete_address(&net.bridge, net.gateway).await;
            let v6 = match net.gateway6 {
                Some(gateway6) => links.delete_address(&net.bridge, gateway6).await,
                None => Ok(()),
            };
            v4.and(v6)
        } else {
            self.kernel.links.delete_link(&net.bridge).await
        }
    }

    async fn setup_endpoint(
        &self,
        net: &Network,
        ep: &Endpoint,
        how: EndpointSetup<'_>,
    ) -> Result<u32> {
        let bridge = self.bridge_index(net).await?;
        let mac = mac_for(ep.ip);
        let links = &self.kernel.links;
        let ifindex = match (&ep.placement, how.netns) {
            (Placement::InSandbox, Some(netns)) => {
                let ifindex = links
                    .add_veth(&ep.host_veth, bridge, &ep.ifname, mac, Some(netns))
                    .await?;
                let mut addrs = vec![Self::prefixed(net, ep.ip)?];
                if let Some(ip6) = ep.ip6 {
                    addrs.push(Self::prefixed6(net, ip6)?);
                }
                let gateways: Vec<_> = if how.default_route && !net.internal {
                    std::iter::once(net.gateway).chain(net.gateway6).collect()
                } else {
                    Vec::new()
                };
                links
                    .configure_interface(netns, &ep.ifname, &addrs, &gateways)
                    .await?;
                ifindex
            }
            (Placement::OnHost { peer }, _) => {
                links
                    .add_veth(&ep.host_veth, bridge, peer, mac, None)
                    .await?
            }
            (Placement::InSandbox, None) => {
                return Err(Error::invalid(format!(
                    "endpoint {} has no namespace to go into",
                    ep.ifname
                )));
            }
        };
        let placed = Endpoint {
            host_ifindex: ifindex,
            ..ep.clone()
        };
        self.attach_endpoint(net, &placed).await?;
        Ok(ifindex)
    }

    async fn attach_endpoint(&self, net: &Network, ep: &Endpoint) -> Result<()> {
        let links = &self.kernel.links;
        let bridge = links.link_index(&net.bridge).await?.unwrap_or(0);
        let gateway_mac = links.link_mac(bridge).await.unwrap_or_default();
        let entry = DatapathEndpoint {
            ip: ep.ip,
            ip6: ep.ip6,
            mac: mac_for(ep.ip),
            veth_ifindex: ep.host_ifindex,
            network_id: net.net_id,
            gateway: net.gateway,
            gateway_mac,
            flags: net.datapath_flags(),
        };
        // Entries first: the program drops whatever enters from a veth
        // without one.
        let datapath = &self.kernel.datapath;
        datapath.set_endpoint(&entry)?;
        if let Err(e) = datapath.attach_veth(&ep.host_veth) {
            let _ = datapath.remove_endpoint(ep.ip, ep.ip6, ep.host_ifindex);
            return Err(e);
        }
        Ok(())
    }

    async fn teardown_endpoint(&self, ep: &Endpoint) -> Result<()> {
        // Every step runs, whatever the one before did.
        let datapath = &self.kernel.datapath;
        let detached = datapath.detach_veth(&ep.host_veth);
        let removed = datapath.remove_endpoint(ep.ip, ep.ip6, ep.host_ifindex);
        let deleted = self.kernel.links.delete_link(&ep.host_veth).await;
        detached.and(removed).and(deleted)
    }

    fn release_endpoint(&self, ep: &Endpoint) -> Result<()> {
        self.kernel
            .datapath
            .remove_endpoint(ep.ip, ep.ip6, ep.host_ifindex)?;
        let (datapath, links) = (self.kernel.datapath.clone(), self.kernel.links.clone());
        let veth = ep.host_veth.clone();
        tokio::spawn(async move {
            if let Err(e) = datapath.detach_veth(&veth) {
                warn!(veth, "removing pinned link: {e}");
            }
            if let Err(e) = links.delete_link(&veth).await {
                warn!(veth, "deleting veth: {e}");
            }
        });
        Ok(())
    }

    async fn endpoint_problem(&self, ep: &Endpoint) -> Result<Option<String>> {
        if self.kernel.links.link_index(&ep.host_veth).await?.is_none() {
            return Ok(Some(format!("host veth {} is missing", ep.host_veth)));
        }
        Ok(None)
    }

    async fn sweep(&self, networks: &[Network], owned: &[String]) -> Result<()> {
        let owned: HashSet<String> = owned.iter().cloned().collect();
        let links = &self.kernel.links;
        let mut bridges = Vec::new();
        for net in networks {
            bridges.extend(links.link_index(&net.bridge).await?);
        }
        for veth in links.ports_of(&bridges).await? {
            if veth.starts_with("veth") && !owned.contains(&veth) {
                warn!(veth, "deleting an orphaned veth");
                links.delete_link(&veth).await?;
            }
        }
        self.kernel.datapath.unpin_orphan_veth_links(&owned)
    }
}
