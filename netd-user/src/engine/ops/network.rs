//! Networks: create (subnet from the address pools, host bits and overlap
//! checks, the driver's own checks), remove (not the predefined ones, not
//! while containers are attached), list and look up.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use tracing::{info, warn};

use super::lookup::no_such_network;
use crate::engine::{
    Engine,
    address_pool::{next_free_subnet, next_free_subnet6},
    error::{Error, Remedy, Result},
    events::Event,
    ids::random_id,
    model::{DEFAULT_NETWORK, GatewayMode, Network, RESERVED_NETWORKS},
    requests::NetworkCreate,
    store::{Change, State},
    subnets::{check_gateway, check_subnet, check_subnet6, first_host, overlaps},
    validate,
};

impl Engine {
    pub fn network(&self, name: &str) -> Result<Network> {
        self.read(|s| s.networks.get(name).cloned())
            .ok_or_else(|| no_such_network(name))
    }

    /// A network by its id (Docker names networks by id).
    pub fn network_by_id(&self, id: &str) -> Result<Network> {
        self.read(|s| s.networks.values().find(|n| n.id == id).cloned())
            .ok_or_else(|| no_such_network(id))
    }

    pub fn networks(&self) -> Vec<Network> {
        self.read(|s| s.networks.values().cloned().collect())
    }

    pub async fn create_network(&self, req: NetworkCreate) -> Result<Network> {
        let _guard = self.lock().await;
        let mut net = self.read(|s| plan_network(s, &self.config().address_pools, &req))?;
        let driver = self.driver(&net.driver)?;
        driver.validate(&mut net, req.adopt_bridge).await?;
        self.commit(vec![Change::PutNetwork(net.clone())])?;
        if let Err(e) = driver.setup(&net).await {
            let _ = driver.teardown(&net).await;
            let _ = self.commit(vec![Change::DeleteNetwork(net.name.clone())]);
            return Err(e);
        }
        info!(network = %net.name, subnet = %net.subnet, bridge = %net.bridge, "network created");
        self.emit(Event::NetworkCreated(net.clone()));
        // The new gateway is a host address from now on.
        self.sync_host_addrs().await?;
        Ok(net)
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        let _guard = self.lock().await;
        if RESERVED_NETWORKS.contains(&name) {
            return Err(Error::invalid(format!(
                "{name} is a pre-defined network and cannot be removed: only networks netd was asked to create can be"
            )));
        }
        let net = self.network(name)?;
        let attached: Vec<String> = self
            .containers()
            .into_iter()
            .filter(|c| c.endpoint_on(name).is_some())
            .map(|c| c.name)
            .collect();
        if !attached.is_empty() {
            return Err(Error::in_use(format!(
                "network {name} has containers attached: {}; remove or disconnect them first",
                attached.join(", ")
            )));
        }
        self.teardown_network(&net).await?;
        info!(network = name, "network removed");
        Ok(())
    }

    /// Creates the default network's record on first start.
    pub(super) async fn ensure_default_network(&self) -> Result<()> {
        if let Some(net) = self.read(|s| s.networks.get(DEFAULT_NETWORK).cloned()) {
            return self.follow_default_subnet6(net).await;
        }
        let config = self.config();
        let subnet = config.default_subnet;
        let mut net = Network {
            name: DEFAULT_NETWORK.into(),
            id: random_id()?,
            net_id: 1,
            driver: "bridge".into(),
            bridge: config.default_bridge.clone(),
            subnet,
            gateway: first_host(subnet)?,
            subnet6: config.default_subnet6,
            gateway6: config.default_subnet6.map(first_host).transpose()?,
            internal: false,
            gateway_mode: GatewayMode::Nat,
            adopted_bridge: false,
        };
        // A bridge of that name that is already there is not ours to
        // delete: adopted, not refused.
        let driver = self.driver(&net.driver)?;
        if let Err(e) = driver.validate(&mut net, false).await {
            if e.remedy != Some(Remedy::AdoptBridge) {
                return Err(e);
            }
            net.adopted_bridge = true;
        }
        self.commit(vec![Change::PutNetwork(net)])
    }
}

impl Engine {
    /// The default network takes the daemon's `--default-subnet6` (added,
    /// changed or dropped) at start, as long as no container is on it:
    /// addresses already handed out cannot move.
    async fn follow_default_subnet6(&self, mut net: Network) -> Result<()> {
        let wanted = self.config().default_subnet6;
        if net.subnet6 == wanted {
            return Ok(());
        }
        let attached = self.read(|s| {
            s.containers
                .values()
                .any(|c| c.endpoint_on(DEFAULT_NETWORK).is_some())
        });
        if attached {
            warn!(
                from = ?net.subnet6.map(|s| s.to_string()),
                to = ?wanted.map(|s| s.to_string()),
                "the default network keeps its IPv6 subnet while containers are on it: remove them, then restart with the new --default-subnet6"
            );
            return Ok(());
        }
        if let Some(old) = net.gateway6 {
            self.kernel().links.delete_address(&net.bridge, old).await?;
        }
        net.subnet6 = wanted;
        net.gateway6 = wanted.map(first_host).transpose()?;
        info!(subnet6 = ?wanted.map(|s| s.to_string()), "default network: IPv6 subnet changed");
        self.commit(vec![Change::PutNetwork(net)])
    }
}

/// The network `create` will make, all choices made, nothing created.
pub(super) fn plan_network(
    state: &State,
    pools: &[crate::engine::address_pool::AddressPool],
    req: &NetworkCreate,
) -> Result<Network> {
    validate::network_name(&req.name)?;
    if RESERVED_NETWORKS.contains(&req.name.as_str()) || state.networks.contains_key(&req.name) {
        return Err(Error::exists(format!(
            "network {} already exists: pick another name",
            req.name
        )));
    }
    if req.internal && req.gateway_mode == GatewayMode::Routed {
        return Err(Error::invalid(
            "an internal network cannot have a routed gateway: internal and routed contradict each other (an internal network has no way out); drop one of them",
        ));
    }
    // Subnets held by a runtime's IPAM are taken too, except by the
    // network made on exactly that subnet (Docker's CreateNetwork).
    let taken: Vec<_> = state
        .networks
        .values()
        .map(|n| n.subnet)
        .chain(state.pools.values().map(|p| p.subnet))
        .collect();
    let subnet = match req.subnet {
        Some(IpNetwork::V6(_)) => {
            return Err(Error::invalid(format!(
                "{} is an IPv6 subnet where the IPv4 one is expected: give it as the IPv6 subnet, with --ipv6",
                req.subnet.map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        Some(subnet) => check_subnet(subnet)?,
        None => next_free_subnet(pools, &taken)?,
    };
    let (subnet6, gateway6) = plan_subnet6(state, req)?;
    if let Some(pool) = state
        .pools
        .values()
        .find(|p| p.subnet != subnet && overlaps(p.subnet, subnet))
    {
        return Err(Error::conflict(format!(
            "subnet {subnet} overlaps address pool {} of a Docker network: pick a subnet that does not",
            pool.subnet
        )));
    }
    if let Some(other) = state.networks.values().find(|n| overlaps(n.subnet, subnet)) {
        return Err(Error::conflict(format!(
            "subnet {subnet} overlaps network {} ({}): pick a subnet that does not",
            other.name, other.subnet
        )));
    }
    let gateway = match req.gateway {
        Some(gw) => check_gateway(subnet, gw)?,
        None => first_host(subnet)?,
    };
    let id = match &req.id {
        Some(id) if state.networks.values().any(|n| &n.id == id) => {
            return Err(Error::exists(format!(
                "a network with id {id} already exists"
            )));
        }
        Some(id) => id.clone(),
        None => random_id()?,
    };
    let bridge = req
        .bridge
        .clone()
        .unwrap_or_else(|| format!("br-{}", id.chars().take(12).collect::<String>()));
    validate::bridge_name(&bridge)?;
    if state.networks.values().any(|n| n.bridge == bridge) {
        return Err(Error::conflict(format!(
            "bridge {bridge} already belongs to another network: pick another bridge name"
        )));
    }
    if req.adopt_bridge && req.bridge.is_none() {
        return Err(Error::invalid(
            "adopting a bridge needs its name: name the bridge to adopt",
        ));
    }
    let net_id = state.networks.values().map(|n| n.net_id).max().unwrap_or(0) + 1;
    Ok(Network {
        name: req.name.clone(),
        id,
        net_id,
        driver: "bridge".into(),
        bridge,
        subnet,
        gateway,
        subnet6,
        gateway6,
        internal: req.internal,
        gateway_mode: req.gateway_mode,
        adopted_bridge: false,
    })
}

/// The IPv6 subnet and gateway of a dual-stack network: the one asked
/// for (no host bits, overlapping no other network's), or the next free
/// /64 of the IPv6 pool.
fn plan_subnet6(state: &State, req: &NetworkCreate) -> Result<(Option<IpNetwork>, Option<IpAddr>)> {
    if !req.ipv6 {
        if let Some(s) = req.subnet6 {
            return Err(Error::invalid(format!(
                "IPv6 subnet {s} given without --ipv6: enable IPv6 on the network"
            )));
        }
        if req.gateway6.is_some() {
            return Err(Error::invalid(
                "an IPv6 gateway needs --ipv6 and an IPv6 subnet",
            ));
        }
        return Ok((None, None));
    }
    // A runtime IPAM's IPv6 pools are taken too (see plan_network).
    let taken: Vec<IpNetwork> = state
        .networks
        .values()
        .filter_map(|n| n.subnet6)
        .chain(state.pools.values().map(|p| p.subnet))
        .collect();
    let subnet6 = match req.subnet6 {
        Some(IpNetwork::V4(s)) => {
            return Err(Error::invalid(format!(
                "{s} is an IPv4 subnet where the IPv6 one is expected"
            )));
        }
        Some(s) => check_subnet6(s)?,
        None => next_free_subnet6(&taken)?,
    };
    if let Some(pool) = state
        .pools
        .values()
        .find(|p| p.subnet != subnet6 && overlaps(p.subnet, subnet6))
    {
        return Err(Error::conflict(format!(
            "IPv6 subnet {subnet6} overlaps address pool {} of a Docker network: pick a subnet that does not",
            pool.subnet
        )));
    }
    if let Some(other) = state
        .networks
        .values()
        .find(|n| n.subnet6.is_some_and(|o| overlaps(o, subnet6)))
    {
        return Err(Error::conflict(format!(
            "IPv6 subnet {subnet6} overlaps network {} ({}): pick a subnet that does not",
            other.name,
            other.subnet6.map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    let gateway6 = match req.gateway6 {
        Some(IpAddr::V4(gw)) => {
            return Err(Error::invalid(format!(
                "{gw} is an IPv4 address where the IPv6 gateway is expected"
            )));
        }
        Some(gw) => check_gateway(subnet6, gw)?,
        None => first_host(subnet6)?,
    };
    Ok((Some(subnet6), Some(gateway6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::address_pool::AddressPool;
    use crate::engine::error::ErrorKind;

    fn req(name: &str) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            ..NetworkCreate::default()
        }
    }

    #[test]
    fn plans_take_the_next_free_pool_subnet() {
        let mut state = State::default();
        let a = plan_network(&state, &AddressPool::defaults(), &req("a")).unwrap();
        assert_eq!(a.subnet.to_string(), "172.18.0.0/16");
        assert_eq!(a.gateway.to_string(), "172.18.0.1");
        state.networks.insert(a.name.clone(), a);
        let b = plan_network(&state, &AddressPool::defaults(), &req("b")).unwrap();
        assert_eq!(b.subnet.to_string(), "172.19.0.0/16");
        assert_eq!(b.net_id, 2);
    }

    #[test]
    fn plans_refuse_conflicts_and_contradictions() {
        let mut state = State::default();
        let a = plan_network(&state, &AddressPool::defaults(), &req("a")).unwrap();
        state.networks.insert(a.name.clone(), a);
        let kind = |r: NetworkCreate| {
            plan_network(&state, &AddressPool::defaults(), &r)
                .map(|_| ())
                .map_err(|e| e.kind)
        };
        assert_eq!(kind(req("a")), Err(ErrorKind::AlreadyExists));
        assert_eq!(kind(req("host")), Err(ErrorKind::AlreadyExists));
        assert_eq!(kind(req("bad/name")), Err(ErrorKind::InvalidInput));
        let mut overlap = req("c");
        overlap.subnet = Some("172.18.5.0/24".parse().unwrap());
        assert_eq!(kind(overlap), Err(ErrorKind::Conflict));
        let mut both = req("d");
        both.internal = true;
        both.gateway_mode = GatewayMode::Routed;
        assert_eq!(kind(both), Err(ErrorKind::InvalidInput));
    }
}
