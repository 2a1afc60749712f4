//! Networks: a Linux bridge per network with the gateway address on it.
//! netd starts with one, `bridge` (netd0, 172.17.0.0/16), like docker0.

use anyhow::{Result, anyhow};
use netd_common::BridgeValue;

use crate::{daemon::Daemon, state::NetworkRecord};

pub const DEFAULT_NETWORK: &str = "bridge";

impl Daemon {
    /// Creates the default network's record on first start and makes sure
    /// its bridge exists and carries the gateway address.
    pub async fn ensure_default_network(&mut self) -> Result<()> {
        let net = match self.network(DEFAULT_NETWORK) {
            Ok(net) => net,
            Err(_) => {
                let subnet = self.config.default_subnet;
                let gateway = subnet
                    .nth(1)
                    .ok_or_else(|| anyhow!("default subnet {subnet} has no room for a gateway"))?;
                let net = NetworkRecord {
                    name: DEFAULT_NETWORK.into(),
                    id: crate::container::random_id()?,
                    net_id: 1,
                    bridge: self.config.bridge.clone(),
                    subnet,
                    gateway,
                    internal: false,
                };
                self.store.put_network(&net)?;
                net
            }
        };
        self.plumb_network(&net).await
    }

    /// Bridge up with the gateway address, known to the datapath;
    /// idempotent.
    pub async fn plumb_network(&mut self, net: &NetworkRecord) -> Result<()> {
        let mac = crate::ipam::mac_for(net.gateway);
        let index = self.netlink.ensure_bridge(&net.bridge, mac).await?;
        self.netlink
            .add_address(index, net.gateway, net.subnet.prefix())
            .await?;
        let bridge = BridgeValue {
            network_id: net.net_id,
            gateway: u32::from(net.gateway).to_be(),
            internal: u32::from(net.internal),
        };
        self.datapath.set_bridge(index, bridge)
    }

    pub fn network(&self, name: &str) -> Result<NetworkRecord> {
        self.store
            .networks()?
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("no such network: {name} (see `netd network ls`)"))
    }

    /// Removes the bridges of every network (used by `netd down`).
    pub async fn unplumb_networks(&self) -> Result<()> {
        for net in self.store.networks()? {
            self.netlink.delete_link(&net.bridge).await?;
        }
        Ok(())
    }
}
