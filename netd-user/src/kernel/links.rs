//! The engine's `Links` on Linux: rtnetlink sockets in the daemon's
//! namespace, and throwaway ones bound to a container's namespace for what
//! happens inside it.

use std::{net::IpAddr, path::Path};

use anyhow::Context;
use async_trait::async_trait;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::link::InfoKind;

use super::netlink::Netlink;
use crate::engine::{
    error::{Error, KernelContext, Result},
    kernel::{LinkKind, Links},
};

fn v4(ip: IpAddr) -> Result<std::net::Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(ip) => Err(Error::invalid(format!(
            "{ip} is an IPv6 address where an IPv4 gateway is needed"
        ))),
    }
}

fn v6(ip: IpAddr) -> Result<std::net::Ipv6Addr> {
    match ip {
        IpAddr::V6(ip) => Ok(ip),
        IpAddr::V4(ip) => Err(Error::invalid(format!(
            "{ip} is an IPv4 address where an IPv6 gateway is needed"
        ))),
    }
}

#[async_trait]
impl Links for Netlink {
    async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Netlink::link_index(self, name).await.kernel()
    }

    async fn link_kind(&self, name: &str) -> Result<Option<LinkKind>> {
        if self.is_kind(name, InfoKind::Bridge).await.kernel()? == Some(true) {
            return Ok(Some(LinkKind::Bridge));
        }
        Ok(match self.is_kind(name, InfoKind::Veth).await.kernel()? {
            None => None,
            Some(true) => Some(LinkKind::Veth),
            Some(false) => Some(LinkKind::Other),
        })
    }

    async fn link_mac(&self, index: u32) -> Result<[u8; 6]> {
        Netlink::link_mac(self, index).await.kernel()
    }

    async fn ensure_bridge(&self, name: &str, mac: [u8; 6]) -> Result<u32> {
        Netlink::ensure_bridge(self, name, mac).await.kernel()
    }

    async fn add_address(&self, index: u32, addr: IpNetwork) -> Result<()> {
        Netlink::add_address(self, index, addr.ip(), addr.prefix())
            .await
            .kernel()
    }

    async fn delete_address(&self, name: &str, ip: IpAddr) -> Result<()> {
        Netlink::delete_address(self, name, ip).await.kernel()
    }

    async fn delete_link(&self, name: &str) -> Result<()> {
        Netlink::delete_link(self, name).await.kernel()
    }

    async fn ports_of(&self, bridges: &[u32]) -> Result<Vec<String>> {
        Netlink::ports_of(self, bridges).await.kernel()
    }

    async fn add_veth(
        &self,
        host: &str,
        bridge: u32,
        peer: &str,
        peer_mac: [u8; 6],
        netns: Option<&Path>,
    ) -> Result<u32> {
        Netlink::add_veth(self, host, bridge, peer, peer_mac, netns)
            .await
            .kernel()
    }

    async fn host_addresses(&self) -> Result<Vec<IpAddr>> {
        self.host_addrs().await.kernel()
    }

    async fn default_route_link(&self) -> Result<String> {
        self.default_route_ifname().await.kernel()
    }

    async fn loopback_up(&self, netns: &Path) -> Result<()> {
        let inner = Netlink::in_netns(netns).kernel()?;
        let lo = Netlink::link_index(&inner, "lo")
            .await
            .kernel()?
            .ok_or_else(|| Error::kernel(anyhow::anyhow!("no lo in the container namespace")))?;
        inner.set_up(lo).await.kernel()
    }

    async fn configure_interface(
        &self,
        netns: &Path,
        ifname: &str,
        addrs: &[IpNetwork],
        gateways: &[IpAddr],
    ) -> Result<()> {
        Links::loopback_up(self, netns).await?;
        let inner = Netlink::in_netns(netns).kernel()?;
        let index = Netlink::link_index(&inner, ifname)
            .await
            .kernel()?
            .with_context(|| format!("{ifname} did not arrive in the container namespace"))
            .kernel()?;
        for addr in addrs {
            inner
                .add_address(index, addr.ip(), addr.prefix())
                .await
                .kernel()?;
        }
        inner.set_up(index).await.kernel()?;
        for gateway in gateways {
            match gateway {
                IpAddr::V4(gw) => inner.add_default_route(*gw).await.kernel()?,
                IpAddr::V6(gw) => inner.add_default_route6(*gw).await.kernel()?,
            }
        }
        Ok(())
    }

    async fn replace_default_route(&self, netns: &Path, gateway: Option<IpAddr>) -> Result<()> {
        let inner = Netlink::in_netns(netns).kernel()?;
        let gateway = gateway.map(v4).transpose()?;
        inner.replace_default_route(gateway).await.kernel()
    }

    async fn replace_default_route6(&self, netns: &Path, gateway: Option<IpAddr>) -> Result<()> {
        let inner = Netlink::in_netns(netns).kernel()?;
        let gateway = gateway.map(v6).transpose()?;
        inner.replace_default_route6(gateway).await.kernel()
    }
}
