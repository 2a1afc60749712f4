//! Address pools for a runtime's IPAM (Docker's `IpamDriver`): a pool is
//! a subnet held before and while a network uses it, and the addresses
//! handed out of it. Pools and networks share one address space: a pool
//! overlaps no network but the one created on exactly its subnet, and
//! networks created without a subnet skip the pools' subnets.

use std::{collections::HashSet, net::IpAddr};

use ipnetwork::IpNetwork;
use tracing::info;

use crate::engine::{
    Engine,
    address_pool::{AddressPool, next_free_subnet, next_free_subnet6},
    error::{Error, Result},
    ipam,
    model::AddressPoolLease,
    requests::AddressUse,
    store::{Change, State},
    subnets::{check_gateway, check_subnet, check_subnet6, first_host, overlaps},
};

fn no_such_pool(id: &str) -> Error {
    Error::not_found(format!(
        "no address pool {id}: it was released or never requested; recreate the network"
    ))
}

/// The pool `request_pool` will record, nothing recorded: an IPv4 pool,
/// or with `v6` an IPv6 one (the next free /64 of the IPv6 pool when no
/// subnet is given).
pub(super) fn plan_pool(
    state: &State,
    pools: &[AddressPool],
    subnet: Option<IpNetwork>,
    v6: bool,
) -> Result<AddressPoolLease> {
    // Both families of every network, and every pool.
    let taken: Vec<IpNetwork> = state
        .networks
        .values()
        .flat_map(|n| std::iter::once(n.subnet).chain(n.subnet6))
        .chain(state.pools.values().map(|p| p.subnet))
        .collect();
    let subnet = match subnet {
        Some(subnet) => {
            let subnet = match (subnet, v6) {
                (IpNetwork::V4(_), false) => check_subnet(subnet)?,
                (IpNetwork::V6(_), true) => check_subnet6(subnet)?,
                (IpNetwork::V4(_), true) => {
                    return Err(Error::invalid(format!(
                        "{subnet} is an IPv4 subnet where an IPv6 one is asked for: give an IPv6 subnet"
                    )));
                }
                (IpNetwork::V6(_), false) => {
                    return Err(Error::invalid(format!(
                        "{subnet} is an IPv6 subnet where an IPv4 one is asked for: give it as the IPv6 subnet"
                    )));
                }
            };
            if let Some(other) = state.pools.values().find(|p| overlaps(p.subnet, subnet)) {
                return Err(Error::conflict(format!(
                    "subnet {subnet} overlaps address pool {} of another network: pick a subnet that does not",
                    other.subnet
                )));
            }
            if let Some(net) = state.networks.values().find(|n| {
                overlaps(n.subnet, subnet) || n.subnet6.is_some_and(|s| overlaps(s, subnet))
            }) {
                return Err(Error::conflict(format!(
                    "subnet {subnet} overlaps netd network {}: pick a subnet that does not",
                    net.name
                )));
            }
            subnet
        }
        None if v6 => next_free_subnet6(&taken)?,
        None => next_free_subnet(pools, &taken)?,
    };
    Ok(AddressPoolLease {
        id: subnet.to_string(),
        subnet,
        gateway: None,
        addresses: Default::default(),
    })
}

/// Picks an address of `pool` (nothing recorded).
pub(super) fn plan_address(
    state: &State,
    pool: &AddressPoolLease,
    preferred: Option<IpAddr>,
    what: AddressUse,
) -> Result<IpAddr> {
    let taken_by = |ip: IpAddr| pool.addresses.contains(&ip);
    match what {
        AddressUse::Gateway => {
            let ip = match preferred {
                Some(ip) => check_gateway(pool.subnet, ip)?,
                None => first_host(pool.subnet)?,
            };
            if taken_by(ip) && pool.gateway != Some(ip) {
                return Err(Error::conflict(format!(
                    "address {ip} is already in use: pick another gateway"
                )));
            }
            Ok(ip)
        }
        AddressUse::Host => {
            // The pool's own record, and the endpoints of a network on it
            // (belt and braces: they should be in the record).
            let mut used: HashSet<IpAddr> = pool.addresses.iter().copied().collect();
            // An IPv6 pool is a dual-stack network's second subnet.
            let v6 = pool.subnet.is_ipv6();
            let on_pool = |n: &crate::engine::model::Network| {
                if v6 {
                    n.subnet6 == Some(pool.subnet)
                } else {
                    n.subnet == pool.subnet
                }
            };
            used.extend(
                state
                    .containers
                    .values()
                    .flat_map(|c| c.endpoints.iter())
                    .filter(|e| state.networks.get(&e.network).is_some_and(on_pool))
                    .filter_map(|e| if v6 { e.ip6 } else { Some(e.ip) }),
            );
            let gateway = pool
                .gateway
                .or_else(|| {
                    state
                        .networks
                        .values()
                        .find(|n| on_pool(n))
                        .and_then(|n| if v6 { n.gateway6 } else { Some(n.gateway) })
                })
                .unwrap_or(pool.subnet.network());
            ipam::allocate(pool.subnet, gateway, &used, preferred)
        }
    }
}

impl Engine {
    /// Address pools a runtime's IPAM holds.
    pub fn pools(&self) -> Vec<AddressPoolLease> {
        self.read(|s| s.pools.values().cloned().collect())
    }

    /// Holds a subnet for a network to come: `subnet` if given (it must
    /// overlap no network and no other pool), else the next free subnet
    /// of the default address pools (with `v6`, of the IPv6 pool).
    pub async fn request_pool(
        &self,
        subnet: Option<IpNetwork>,
        v6: bool,
    ) -> Result<AddressPoolLease> {
        let _guard = self.lock().await;
        let pool = self.read(|s| plan_pool(s, &self.config().address_pools, subnet, v6))?;
        self.commit(vec![Change::PutPool(pool.clone())])?;
        info!(pool = %pool.id, "address pool requested");
        Ok(pool)
    }

    /// Lets a pool go (a pool already gone is fine).
    pub async fn release_pool(&self, id: &str) -> Result<()> {
        let _guard = self.lock().await;
        if self.read(|s| s.pools.contains_key(id)) {
            self.commit(vec![Change::DeletePool(id.to_string())])?;
            info!(pool = id, "address pool released");
        }
        Ok(())
    }

    /// Hands out an address of pool `id`: `preferred` if free, else the
    /// lowest free one (for the gateway: the first host address).
    pub async fn request_address(
        &self,
        id: &str,
        preferred: Option<IpAddr>,
        what: AddressUse,
    ) -> Result<IpAddr> {
        let _guard = self.lock().await;
        let mut pool = self
            .read(|s| s.pools.get(id).cloned())
            .ok_or_else(|| no_such_pool(id))?;
        let ip = self.read(|s| plan_address(s, &pool, preferred, what))?;
        pool.addresses.insert(ip);
        if what == AddressUse::Gateway {
            pool.gateway = Some(ip);
        }
        self.commit(vec![Change::PutPool(pool)])?;
        Ok(ip)
    }

    /// Takes an address back into pool `id` (unknown ones are fine).
    pub async fn release_address(&self, id: &str, ip: IpAddr) -> Result<()> {
        let _guard = self.lock().await;
        let Some(mut pool) = self.read(|s| s.pools.get(id).cloned()) else {
            return Ok(());
        };
        if !pool.addresses.remove(&ip) {
            return Ok(());
        }
        if pool.gateway == Some(ip) {
            pool.gateway = None;
        }
        self.commit(vec![Change::PutPool(pool)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{error::ErrorKind, model::Network};

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn with_default_bridge() -> State {
        let mut state = State::default();
        state.networks.insert(
            "bridge".into(),
            Network {
                name: "bridge".into(),
                id: "b".into(),
                net_id: 1,
                driver: "bridge".into(),
                bridge: "netd0".into(),
                subnet: net("172.17.0.0/16"),
                gateway: ip("172.17.0.1"),
                subnet6: None,
                gateway6: None,
                internal: false,
                gateway_mode: Default::default(),
                adopted_bridge: false,
            },
        );
        state
    }

    #[test]
    fn pools_skip_networks_and_each_other() {
        let mut state = with_default_bridge();
        let pools = AddressPool::defaults();
        let a = plan_pool(&state, &pools, None, false).unwrap();
        assert_eq!(a.subnet, net("172.18.0.0/16"));
        assert_eq!(a.id, "172.18.0.0/16");
        state.pools.insert(a.id.clone(), a);
        let b = plan_pool(&state, &pools, None, false).unwrap();
        assert_eq!(b.subnet, net("172.19.0.0/16"));
        let kind = |s: &str| plan_pool(&state, &pools, Some(net(s)), false).map_err(|e| e.kind);
        assert_eq!(kind("172.17.5.0/24").unwrap_err(), ErrorKind::Conflict);
        assert_eq!(kind("172.18.0.0/24").unwrap_err(), ErrorKind::Conflict);
        assert_eq!(kind("198.19.5.1/24").unwrap_err(), ErrorKind::InvalidInput);
        assert!(kind("198.19.5.0/24").is_ok());
    }

    #[test]
    fn v6_pools_take_a_ula_64_and_refuse_the_wrong_family() {
        let mut state = with_default_bridge();
        let pools = AddressPool::defaults();
        let a = plan_pool(&state, &pools, None, true).unwrap();
        assert_eq!(a.subnet, net("fd00:6e65:7464::/64"));
        state.pools.insert(a.id.clone(), a);
        let b = plan_pool(&state, &pools, None, true).unwrap();
        assert_eq!(b.subnet, net("fd00:6e65:7464:1::/64"));
        let kind = |s: &str, v6| plan_pool(&state, &pools, Some(net(s)), v6).map_err(|e| e.kind);
        assert_eq!(
            kind("fd00:6e65:7464::/80", true).unwrap_err(),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind("fd00:1::/125", true).unwrap_err(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind("fd00:1::5/64", true).unwrap_err(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind("10.9.0.0/24", true).unwrap_err(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind("fd00:1::/64", false).unwrap_err(),
            ErrorKind::InvalidInput
        );
        assert!(kind("fd00:1::/64", true).is_ok());
        // An address of a v6 pool: the first host is the gateway's.
        let mut pool = plan_pool(&state, &pools, Some(net("fd00:1::/64")), true).unwrap();
        let gw = plan_address(&state, &pool, None, AddressUse::Gateway).unwrap();
        assert_eq!(gw, ip("fd00:1::1"));
        pool.gateway = Some(gw);
        pool.addresses.insert(gw);
        assert_eq!(
            plan_address(&state, &pool, None, AddressUse::Host).unwrap(),
            ip("fd00:1::2")
        );
    }

    #[test]
    fn addresses_follow_the_pool_record() {
        let state = State::default();
        let mut pool = plan_pool(
            &state,
            &AddressPool::defaults(),
            Some(net("198.19.1.0/24")),
            false,
        )
        .unwrap();
        let gw = plan_address(&state, &pool, None, AddressUse::Gateway).unwrap();
        assert_eq!(gw, ip("198.19.1.1"));
        pool.gateway = Some(gw);
        pool.addresses.insert(gw);
        let a = plan_address(&state, &pool, None, AddressUse::Host).unwrap();
        assert_eq!(a, ip("198.19.1.2"));
        pool.addresses.insert(a);
        assert_eq!(
            plan_address(&state, &pool, None, AddressUse::Host).unwrap(),
            ip("198.19.1.3")
        );
        assert_eq!(
            plan_address(&state, &pool, Some(a), AddressUse::Host)
                .unwrap_err()
                .kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            plan_address(&state, &pool, Some(ip("198.19.1.9")), AddressUse::Host).unwrap(),
            ip("198.19.1.9")
        );
    }
}
