//! Endpoints: one interface of a container on one network. A veth pair
//! whose host side joins the network's bridge and whose peer is created
//! directly inside the container's namespace as `ethN`; an address from
//! IPAM; the datapath programs on the host side and its entry in
//! `NETD_ENDPOINTS`.

use std::{collections::HashSet, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};
use netd_common::EndpointValue;

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
        self.datapath.attach_veth(&ep.host_veth)?;
        let value = EndpointValue {
            ifindex,
            network_id: net.net_id,
            mac: ipam::mac_for(ep.ip),
            gw_mac,
            gateway: u32::from(net.gateway).to_be(),
            internal: u32::from(net.internal),
        };
        self.datapath.set_endpoint(ep.ip, value)
    }

    /// Deletes the veth (its peer goes with it) and the datapath entries.
    /// Pieces that are already gone are fine.
    pub async fn unplumb_endpoint(&mut self, ep: &EndpointRecord) -> Result<()> {
        self.datapath.detach_veth(&ep.host_veth)?;
        self.datapath.remove_endpoint(ep.ip)?;
        self.netlink.delete_link(&ep.host_veth).await
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
