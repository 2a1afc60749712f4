//! Networks: a Linux bridge per network with the gateway address on it.
//! netd starts with one, `bridge` (netd0, 172.17.0.0/16), like docker0;
//! user-defined networks get the next free subnet of the default address
//! pools (`address_pool`; by default the /16s from 172.18.0.0 upward).

use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow, bail};
use ipnetwork::Ipv4Network;
use netd_common::BridgeValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::info;

use crate::{
    address_pool::next_free_subnet,
    container::{random_id, validate_name},
    daemon::Daemon,
    netlink::Netlink,
    state::{ContainerRecord, GatewayMode, NetMode, NetworkRecord},
};

pub const DEFAULT_NETWORK: &str = "bridge";
/// Docker's predefined networks: they exist from the start and cannot be
/// created or removed.
const RESERVED: [&str; 3] = [DEFAULT_NETWORK, "host", "none"];
/// The predefined networks that are modes, not bridges (`--network
/// host|none`), with the driver Docker shows for them.
const PSEUDO_NETWORKS: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

/// What `network create` asks for: the CLI's arguments, sent as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
pub struct NetworkSpec {
    /// Network name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 characters.
    pub name: String,
    /// Subnet (default: the next free subnet of the daemon's default
    /// address pools; without --default-address-pool, the next free /16
    /// from 172.18.0.0).
    #[arg(long)]
    pub subnet: Option<Ipv4Network>,
    /// Gateway address (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// No MASQUERADE and no default route: containers reach only each other.
    #[arg(long)]
    #[serde(default)]
    pub internal: bool,
    /// Bridge device name (default br-<id prefix>).
    #[arg(long)]
    pub bridge: Option<String>,
    /// nat: MASQUERADE, and from outside only published ports get in;
    /// routed: no NAT, hosts that route the subnet here reach the
    /// containers directly (Docker's gateway_mode_ipv4).
    #[arg(long, value_enum, default_value_t = GatewayMode::Nat)]
    #[serde(default)]
    pub gateway_mode: GatewayMode,
    /// Use the existing bridge named by --bridge. netd adds the gateway
    /// address to it and never deletes it.
    #[arg(long, requires = "bridge")]
    #[serde(default)]
    pub adopt_bridge: bool,
}

impl Daemon {
    /// Creates the default network's record on first start, then makes
    /// sure every network's bridge exists and carries its gateway.
    pub async fn ensure_networks(&mut self) -> Result<()> {
        if self.network(DEFAULT_NETWORK).is_err() {
            let subnet = self.config.default_subnet;
            let net = NetworkRecord {
                name: DEFAULT_NETWORK.into(),
                id: random_id()?,
                net_id: 1,
                bridge: self.config.bridge.clone(),
                subnet,
                gateway: first_host(subnet)?,
                internal: false,
                gateway_mode: GatewayMode::Nat,
                // A bridge of that name that is already there is not ours
                // to delete.
                adopted_bridge: self.netlink.is_bridge(&self.config.bridge).await? == Some(true),
            };
            self.store.put_network(&net)?;
        }
        for net in self.store.networks()? {
            self.plumb_network(&net).await?;
        }
        Ok(())
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
            flags: net.datapath_flags()
                | if net.adopted_bridge {
                    netd_common::net_flags::ADOPTED
                } else {
                    0
                },
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

    pub async fn network_create(&mut self, spec: &NetworkSpec) -> Result<NetworkRecord> {
        let mut net = self.plan_network(spec)?;
        net.adopted_bridge = self
            .check_bridge_name(&net.bridge, spec.adopt_bridge)
            .await?;
        self.store.put_network(&net)?;
        if let Err(e) = self.plumb_network(&net).await {
            let _ = self.unplumb_bridge(&net).await;
            let _ = self.store.delete_network(&net.name);
            return Err(e);
        }
        self.start_dns(&net)?;
        info!(network = %net.name, subnet = %net.subnet, bridge = %net.bridge, "network created");
        Ok(net)
    }

    fn plan_network(&self, spec: &NetworkSpec) -> Result<NetworkRecord> {
        validate_name(&spec.name).map_err(|_| {
            anyhow!(
                "invalid network name {:?}: use 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit",
                spec.name
            )
        })?;
        if RESERVED.contains(&spec.name.as_str()) || self.network(&spec.name).is_ok() {
            bail!("network {} already exists: pick another name", spec.name);
        }
        if spec.internal && spec.gateway_mode == GatewayMode::Routed {
            bail!(
                "--internal and --gateway-mode routed contradict each other: an internal network has no way out; drop one of them"
            );
        }
        let existing = self.store.networks()?;
        let subnet = match spec.subnet {
            Some(subnet) => check_subnet(subnet)?,
            None => {
                let taken: Vec<_> = existing.iter().map(|n| n.subnet).collect();
                next_free_subnet(&self.config.address_pools, &taken)?
            }
        };
        if let Some(other) = existing.iter().find(|n| overlaps(n.subnet, subnet)) {
            bail!(
                "subnet {subnet} overlaps network {} ({}): pick a subnet that does not",
                other.name,
                other.subnet
            );
        }
        let gateway = match spec.gateway {
            Some(gw) => check_gateway(subnet, gw)?,
            None => first_host(subnet)?,
        };
        let id = random_id()?;
        let bridge = spec
            .bridge
            .clone()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            bail!("invalid bridge name {bridge:?}: use 1-15 characters without '/' or spaces");
        }
        if existing.iter().any(|n| n.bridge == bridge) {
            bail!("bridge {bridge} already belongs to another network: pick another --bridge");
        }
        let net_id = existing.iter().map(|n| n.net_id).max().unwrap_or(0) + 1;
        Ok(NetworkRecord {
            name: spec.name.clone(),
            id,
            net_id,
            bridge,
            subnet,
            gateway,
            internal: spec.internal,
            gateway_mode: spec.gateway_mode,
            adopted_bridge: false,
        })
    }

    pub async fn network_rm(&mut self, name: &str) -> Result<()> {
        if RESERVED.contains(&name) {
            bail!(
                "{name} is a pre-defined network and cannot be removed: only networks made by `netd network create` can be (`netd down` removes everything)"
            );
        }
        let net = self.network(name)?;
        let attached = self.containers_on(name)?;
        if !attached.is_empty() {
            bail!(
                "network {name} has containers attached: {}; remove or disconnect them first",
                attached.join(", ")
            );
        }
        self.stop_dns(name);
        self.unplumb_bridge(&net).await?;
        self.store.delete_network(name)?;
        info!(network = name, "network removed");
        Ok(())
    }

    fn containers_on(&self, network: &str) -> Result<Vec<String>> {
        Ok(self
            .store
            .containers()?
            .into_iter()
            .filter(|c| c.endpoint_on(network).is_some())
            .map(|c| c.name)
            .collect())
    }

    /// `network connect`: a new interface (eth1, eth2, ...) on `network`.
    pub async fn network_connect(
        &mut self,
        network: &str,
        container: &str,
        ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        let net = self.network(network)?;
        let mut rec = self.container(container)?;
        if rec.mode != NetMode::Bridge {
            bail!(
                "container {container} has no network namespace of its own to connect (mode {:?})",
                rec.mode
            );
        }
        if rec.endpoint_on(network).is_some() {
            bail!("container {container} is already connected to network {network}");
        }
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| rec.endpoints.iter().all(|e| &e.ifname != n))
            .unwrap_or_default();
        let mut ep = self.plan_endpoint(&net, &ifname, ip)?;
        let gateway_before = self.gateway_of(&rec)?;
        ep.host_ifindex = match self.plumb_endpoint(&rec.netns, &ep, false).await {
            Ok(index) => index,
            Err(e) => {
                let _ = self.unplumb_endpoint(&ep).await;
                return Err(e);
            }
        };
        rec.endpoints.push(ep.clone());
        if let Err(e) = self.move_default_route(&rec, gateway_before).await {
            let _ = self.unplumb_endpoint(&ep).await;
            return Err(e);
        }
        self.store.put_container(&rec)?;
        self.write_names(&rec)?;
        info!(network, container, "container connected");
        Ok(())
    }

    /// The gateway a container's default route goes via: that of its first
    /// endpoint on a network that is not `--internal` (eth0 unless that
    /// one is internal or gone), as Docker picks its gateway endpoint.
    pub fn gateway_of(&self, rec: &ContainerRecord) -> Result<Option<Ipv4Addr>> {
        for ep in &rec.endpoints {
            let net = self.network(&ep.network)?;
            if !net.internal {
                return Ok(Some(net.gateway));
            }
        }
        Ok(None)
    }

    /// After a connect or disconnect: points the default route at the
    /// container's gateway if that changed (so a container that loses its
    /// default network keeps a way out through another one).
    async fn move_default_route(
        &self,
        rec: &ContainerRecord,
        before: Option<Ipv4Addr>,
    ) -> Result<()> {
        let after = self.gateway_of(rec)?;
        if after == before {
            return Ok(());
        }
        Netlink::in_netns(&rec.netns)?
            .replace_default_route(after)
            .await
            .with_context(|| format!("moving the default route of container {}", rec.name))
    }

    /// `network disconnect`: removes the container's interface on `network`.
    pub async fn network_disconnect(&mut self, network: &str, container: &str) -> Result<()> {
        self.network(network)?;
        let mut rec = self.container(container)?;
        let Some(pos) = rec.endpoints.iter().position(|e| e.network == network) else {
            bail!("container {container} is not connected to network {network}");
        };
        let published = self.portmaps_of(container)?;
        let ep = rec.endpoints[pos].clone();
        let stale: Vec<_> = published
            .into_iter()
            .filter(|p| p.mapping.container_ip == ep.ip)
            .collect();
        self.unpublish(&stale)?;
        let gateway_before = self.gateway_of(&rec)?;
        self.unplumb_endpoint(&ep).await?;
        rec.endpoints.remove(pos);
        self.store.put_container(&rec)?;
        self.move_default_route(&rec, gateway_before).await?;
        self.write_names(&rec)?;
        info!(network, container, "container disconnected");
        Ok(())
    }

    /// `network ls`: the networks plus Docker's two pseudo-networks.
    pub fn network_list(&self) -> Result<Value> {
        let mut out: Vec<Value> = self
            .store
            .networks()?
            .iter()
            .map(|n| {
                json!({"Name": n.name, "Id": n.id, "Driver": "bridge", "Scope": "local",
                       "Subnet": n.subnet.to_string(), "Internal": n.internal})
            })
            .collect();
        for (name, driver) in PSEUDO_NETWORKS {
            out.push(json!({"Name": name, "Id": name, "Driver": driver, "Scope": "local", "Subnet": "", "Internal": false}));
        }
        Ok(Value::Array(out))
    }

    /// `network inspect`, in the shape of `docker network inspect`.
    pub fn network_inspect(&self, name: &str) -> Result<Value> {
        if let Some((_, driver)) = PSEUDO_NETWORKS.iter().find(|(n, _)| *n == name) {
            return self.pseudo_network_inspect(name, driver);
        }
        let net = self.network(name)?;
        let mut containers = Map::new();
        for c in self.store.containers()? {
            if let Some(ep) = c.endpoint_on(name) {
                containers.insert(
                    c.id.clone(),
                    json!({
                        "Name": c.name,
                        "MacAddress": ep.mac,
                        "IPv4Address": format!("{}/{}", ep.ip, net.subnet.prefix()),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        // As Docker's, the options show what was set: the gateway mode only
        // when it is not the default.
        let mut options = json!({"com.docker.network.bridge.name": net.bridge});
        if net.gateway_mode != GatewayMode::Nat {
            options["com.docker.network.bridge.gateway_mode_ipv4"] =
                net.gateway_mode.as_str().into();
        }
        Ok(json!({
            "Name": net.name,
            "Id": net.id,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Config": [{"Subnet": net.subnet.to_string(), "Gateway": net.gateway.to_string()}],
            },
            "Internal": net.internal,
            "Containers": containers,
            "Options": options,
        }))
    }

    /// `network inspect host|none`: the containers in that mode, which
    /// have no addresses of their own on it.
    fn pseudo_network_inspect(&self, name: &str, driver: &str) -> Result<Value> {
        let mut containers = Map::new();
        for c in self.store.containers()? {
            let member = matches!(
                (name, &c.mode),
                ("host", NetMode::Host) | ("none", NetMode::None)
            );
            if member {
                containers.insert(
                    c.id.clone(),
                    json!({"Name": c.name, "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}),
                );
            }
        }
        // The Id is the one `network ls` shows.
        Ok(json!({
            "Name": name,
            "Id": name,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Config": []},
            "Internal": false,
            "Containers": containers,
            "Options": {},
        }))
    }

    /// Removes the bridges of every network (used by `netd down`).
    pub async fn unplumb_networks(&mut self) -> Result<()> {
        for net in self.store.networks()? {
            self.stop_dns(&net.name);
            self.unplumb_bridge(&net).await?;
        }
        Ok(())
    }

    /// Deletes a network's bridge, or, for an adopted one, only the
    /// gateway address netd put on it.
    pub async fn unplumb_bridge(&self, net: &NetworkRecord) -> Result<()> {
        unplumb_bridge(&self.netlink, net).await
    }

    /// Whether the bridge `name` of a new network is adopted. An existing
    /// interface is used only when it is a bridge and `adopt` says so; a
    /// missing one cannot be adopted.
    async fn check_bridge_name(&self, name: &str, adopt: bool) -> Result<bool> {
        match (self.netlink.is_bridge(name).await?, adopt) {
            (None, false) => Ok(false),
            (None, true) => bail!(
                "--adopt-bridge: there is no bridge {name} to adopt; create it first or drop --adopt-bridge"
            ),
            (Some(false), _) => bail!(
                "interface {name} exists and is not a bridge: netd never takes over another interface; pick another --bridge name"
            ),
            (Some(true), false) => bail!(
                "bridge {name} already exists and is not netd's: pass --adopt-bridge to use it (netd will never delete it), or pick another --bridge name"
            ),
            (Some(true), true) => Ok(true),
        }
    }
}

/// See [`Daemon::unplumb_bridge`]; also used by `netd down` without a
/// daemon.
pub async fn unplumb_bridge(netlink: &Netlink, net: &NetworkRecord) -> Result<()> {
    if net.adopted_bridge {
        netlink.delete_address(&net.bridge, net.gateway).await
    } else {
        netlink.delete_link(&net.bridge).await
    }
}

fn first_host(subnet: Ipv4Network) -> Result<Ipv4Addr> {
    subnet
        .nth(1)
        .filter(|ip| *ip != subnet.broadcast())
        .ok_or_else(|| anyhow!("subnet {subnet} has no room for a gateway"))
}

fn check_gateway(subnet: Ipv4Network, gateway: Ipv4Addr) -> Result<Ipv4Addr> {
    if !subnet.contains(gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
        bail!("gateway {gateway} is not a host address of subnet {subnet}: pick one inside it");
    }
    Ok(gateway)
}

pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Refuses a subnet with host bits set, in Docker's words: 10.77.6.5/24
/// most likely means a typo, not 10.77.6.0/24.
pub fn check_subnet(subnet: Ipv4Network) -> Result<Ipv4Network> {
    if subnet.ip() != subnet.network() {
        bail!(
            "invalid subnet {subnet}: it should be {}/{}",
            subnet.network(),
            subnet.prefix()
        );
    }
    Ok(subnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_with_host_bits_are_refused() {
        let err = check_subnet("10.77.6.5/24".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid subnet 10.77.6.5/24: it should be 10.77.6.0/24"
        );
        assert!(check_subnet("10.77.6.0/24".parse().unwrap()).is_ok());
    }

    #[test]
    fn overlap_and_gateway_rules() {
        let a: Ipv4Network = "172.18.0.0/16".parse().unwrap();
        assert!(overlaps(a, "172.18.5.0/24".parse().unwrap()));
        assert!(!overlaps(a, "172.19.0.0/16".parse().unwrap()));
        assert!(check_gateway(a, Ipv4Addr::new(172, 18, 0, 254)).is_ok());
        assert!(check_gateway(a, Ipv4Addr::new(172, 19, 0, 1)).is_err());
        assert!(check_gateway(a, Ipv4Addr::new(172, 18, 255, 255)).is_err());
        assert_eq!(first_host(a).unwrap(), Ipv4Addr::new(172, 18, 0, 1));
    }
}
