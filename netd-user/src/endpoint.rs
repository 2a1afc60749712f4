//! Endpoints: one interface of a container on one network. A veth pair
//! whose host side joins the network's bridge and whose peer is created
//! directly inside the container's namespace as `ethN`; an address from
//! IPAM; the datapath programs on the host side and its entry in
//! `NETD_ENDPOINTS`.

use std::{collections::HashSet, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};
use netd_common::{EndpointValue, VethValue};
use tracing::warn;

use crate::{
    container::random_id,
    daemon::Daemon,
    ipam,
    netlink::Netlink,
    state::{EndpointRecord, NetworkRecord},
};

impl Daemon {
    /// Addresses in use on `network`: its containers' endpoints.
    pub fn used_ips(&self, network: &str) -> Result<HashSet<Ipv4Addr>> {
        Ok(self
            .store
            .containers()?
            .iter()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == network)
            .map(|e| e.ip)
            .collect())
    }

    /// Picks the address and names of a new endpoint (nothing is created).
    pub fn plan_endpoint(
        &self,
        net: &NetworkRecord,
        ifname: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<EndpointRecord> {
        let ip = ipam::allocate(
            net.subnet,
            net.gateway,
            &self.used_ips(&net.name)?,
            requested,
        )?;
        Ok(EndpointRecord {
            network: net.name.clone(),
            ifname: ifname.into(),
            ip,
            mac: ipam::format_mac(ipam::mac_for(ip)),
            host_veth: format!("veth{}", &random_id()?[..7]),
            host_ifindex: 0,
        })
    }

    /// Creates the veth pair, addresses the container side and attaches the
    /// datapath. `default_route`: this endpoint carries the default route.
    /// Returns the host veth's ifindex.
    pub async fn plumb_endpoint(
        &mut self,
        netns: &Path,
        ep: &EndpointRecord,
        default_route: bool,
    ) -> Result<u32> {
        let net = self.network(&ep.network)?;
        let bridge = self
            .netlink
            .link_index(&net.bridge)
            .await?
            .with_context(|| format!("bridge {} of network {} is missing", net.bridge, net.name))?;
        let mac = ipam::mac_for(ep.ip);
        let ifindex = self
            .netlink
            .add_veth_into_netns(&ep.host_veth, bridge, &ep.ifname, mac, netns)
            .await?;
        configure_inside(netns, ep, &net, default_route && !net.internal).await?;
        self.attach_endpoint(&net, ep, ifindex).await?;
        Ok(ifindex)
    }

    /// Programs on the host veth and the endpoint's datapath entry.
    pub async fn attach_endpoint(
        &mut self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        ifindex: u32,
    ) -> Result<()> {
        let bridge = self.netlink.link_index(&net.bridge).await?.unwrap_or(0);
        let gw_mac = self.netlink.link_mac(bridge).await.unwrap_or_default();
        let mac = ipam::mac_for(ep.ip);
        let gateway = u32::from(net.gateway).to_be();
        let value = EndpointValue {
            ifindex,
            network_id: net.net_id,
            mac,
            gw_mac,
            gateway,
            flags: net.datapath_flags(),
        };
        let veth = VethValue {
            ip: u32::from(ep.ip).to_be(),
            network_id: net.net_id,
            gateway,
            flags: net.datapath_flags(),
            mac,
            pad: [0; 2],
        };
        // Entries first: the program drops whatever enters from a veth
        // without one.
        self.datapath.set_endpoint(ep.ip, value, veth)?;
        if let Err(e) = self.datapath.attach_veth(&ep.host_veth) {
            let _ = self.datapath.remove_endpoint(ep.ip, ifindex);
            return Err(e);
        }
        Ok(())
    }

    /// Deletes the veth (its peer goes with it) and the datapath entries.
    /// Pieces that are already gone are fine.
    pub async fn unplumb_endpoint(&mut self, ep: &EndpointRecord) -> Result<()> {
        // Every step runs, whatever the one before did.
        let detached = self.datapath.detach_veth(&ep.host_veth);
        let removed = self.datapath.remove_endpoint(ep.ip, ep.host_ifindex);
        let deleted = self.netlink.delete_link(&ep.host_veth).await;
        detached.and(removed).and(deleted)
    }
}

impl Daemon {
    /// Deletes the host veths (and their program links) of removed
    /// endpoints in the background. Each deletion waits for RCU grace
    /// periods (tens of ms); the container is already gone for every
    /// observer (no namespace, no address, no datapath entry), and a crash
    /// before this finishes is caught by `sweep_orphans` at the next start.
    pub fn reclaim_veths(&self, endpoints: &[EndpointRecord]) {
        let items: Vec<_> = endpoints
            .iter()
            .map(|ep| {
                (
                    ep.host_veth.clone(),
                    self.datapath.veth_link_pin(&ep.host_veth),
                )
            })
            .collect();
        let netlink = self.netlink.clone();
        tokio::spawn(async move {
            for (veth, pin) in items {
                if let Err(e) = std::fs::remove_file(&pin)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(veth, "removing pinned link: {e}");
                }
                if let Err(e) = netlink.delete_link(&veth).await {
                    warn!(veth, "deleting veth: {e:#}");
                }
            }
        });
    }

    /// Removes host veths on netd bridges and pinned veth links that no
    /// endpoint owns (left by a crash during a background reclaim).
    pub async fn sweep_orphans(&mut self) -> Result<()> {
        let owned: HashSet<String> = self
            .store
            .containers()?
            .into_iter()
            .flat_map(|c| c.endpoints.into_iter().map(|e| e.host_veth))
            .collect();
        let mut bridges = Vec::new();
        for net in self.store.networks()? {
            bridges.extend(self.netlink.link_index(&net.bridge).await?);
        }
        for veth in self.netlink.ports_of(&bridges).await? {
            if veth.starts_with("veth") && !owned.contains(&veth) {
                warn!(veth, "deleting an orphaned veth");
                self.netlink.delete_link(&veth).await?;
            }
        }
        self.datapath.unpin_orphan_veth_links(&owned)
    }
}

/// Inside the container: `lo` and the interface up, the address, and the
/// default route if this endpoint carries it.
async fn configure_inside(
    netns: &Path,
    ep: &EndpointRecord,
    net: &NetworkRecord,
    default_route: bool,
) -> Result<()> {
    let inner = Netlink::in_netns(netns)?;
    let lo = inner
        .link_index("lo")
        .await?
        .context("no lo in the container namespace")?;
    inner.set_up(lo).await?;
    let index = inner
        .link_index(&ep.ifname)
        .await?
        .with_context(|| format!("{} did not arrive in the container namespace", ep.ifname))?;
    inner.add_address(index, ep.ip, net.subnet.prefix()).await?;
    inner.set_up(index).await?;
    if default_route {
        inner.add_default_route(net.gateway).await?;
    }
    Ok(())
}

/// `lo` up in a fresh namespace (mode `none` gets nothing else).
pub async fn loopback_up(netns: &Path) -> Result<()> {
    let inner = Netlink::in_netns(netns)?;
    let lo = inner
        .link_index("lo")
        .await?
        .context("no lo in the container namespace")?;
    inner.set_up(lo).await
}
