//! Address management. Allocations are not stored on their own: the set of
//! used addresses is derived from the container records, so an allocation
//! can never outlive (or go missing from) its container. Sequential like
//! Docker's: the gateway is .1, the first container .2.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnetwork::IpNetwork;

use super::error::{Error, Result};

/// Picks an address for a new endpoint in `subnet`: `requested` if given
/// and valid, otherwise the lowest free host address.
pub fn allocate(
    subnet: IpNetwork,
    gateway: IpAddr,
    used: &HashSet<IpAddr>,
    requested: Option<IpAddr>,
) -> Result<IpAddr> {
    match requested {
        Some(ip) => check_requested(subnet, gateway, used, ip).map(|()| ip),
        None => first_free(subnet, gateway, used),
    }
}

/// The first and last host addresses of `subnet` (IPv4 leaves out the
/// network and broadcast addresses; IPv6 only the subnet-router anycast).
fn host_range(subnet: IpNetwork) -> (u128, u128) {
    match subnet {
        IpNetwork::V4(n) => (
            u128::from(u32::from(n.network())) + 1,
            u128::from(u32::from(n.broadcast())).saturating_sub(1),
        ),
        IpNetwork::V6(n) => {
            let first = u128::from(n.network()) + 1;
            let size = if n.prefix() == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - u32::from(n.prefix()))) - 1
            };
            (first, u128::from(n.network()).saturating_add(size))
        }
    }
}

fn addr_of(subnet: IpNetwork, n: u128) -> IpAddr {
    match subnet {
        IpNetwork::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpNetwork::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

fn check_requested(
    subnet: IpNetwork,
    gateway: IpAddr,
    used: &HashSet<IpAddr>,
    ip: IpAddr,
) -> Result<()> {
    if !subnet.contains(ip) {
        return Err(Error::invalid(format!(
            "address {ip} is outside the network's subnet {subnet}: pick one inside it"
        )));
    }
    let (first, last) = host_range(subnet);
    if number(ip) < first || number(ip) > last {
        return Err(Error::invalid(format!(
            "address {ip} is the subnet's network or broadcast address: pick a host address"
        )));
    }
    if ip == gateway {
        return Err(Error::conflict(format!(
            "address {ip} is the network's gateway: pick another address"
        )));
    }
    if used.contains(&ip) {
        return Err(Error::conflict(format!(
            "address {ip} is already in use: pick another address or let netd pick one"
        )));
    }
    Ok(())
}

fn first_free(subnet: IpNetwork, gateway: IpAddr, used: &HashSet<IpAddr>) -> Result<IpAddr> {
    let (first, last) = host_range(subnet);
    // Bounded by what is in use: at most used + 2 candidates are tried.
    let mut n = first;
    let mut tries = used.len() + 2;
    while n <= last && tries > 0 {
        let ip = addr_of(subnet, n);
        if ip != gateway && !used.contains(&ip) {
            return Ok(ip);
        }
        n += 1;
        tries -= 1;
    }
    Err(Error::exhausted(format!(
        "subnet {subnet} is exhausted: every address is in use; remove a container or use another network"
    )))
}

/// The MAC Docker derives from an address: 02:42 followed by the IPv4
/// address (for IPv6, its last 4 bytes).
pub fn mac_for(ip: IpAddr) -> [u8; 6] {
    let [a, b, c, d] = match ip {
        IpAddr::V4(ip) => ip.octets(),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x42, a, b, c, d]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::error::ErrorKind;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_container_gets_dot_two_then_dot_three() {
        let gw = ip("172.17.0.1");
        let mut used = HashSet::new();
        let a = allocate(net("172.17.0.0/16"), gw, &used, None).unwrap();
        assert_eq!(a, ip("172.17.0.2"));
        used.insert(a);
        let b = allocate(net("172.17.0.0/16"), gw, &used, None).unwrap();
        assert_eq!(b, ip("172.17.0.3"));
    }

    #[test]
    fn released_address_is_reused_first() {
        let used: HashSet<_> = [ip("172.17.0.3")].into();
        let a = allocate(net("172.17.0.0/16"), ip("172.17.0.1"), &used, None).unwrap();
        assert_eq!(a, ip("172.17.0.2"));
    }

    #[test]
    fn requested_address_is_checked() {
        let gw = ip("172.17.0.1");
        let used: HashSet<_> = [ip("172.17.0.2")].into();
        let n = net("172.17.0.0/16");
        let kind = |r: Option<&str>| allocate(n, gw, &used, r.map(ip)).map_err(|e| e.kind);
        assert_eq!(kind(Some("10.0.0.1")), Err(ErrorKind::InvalidInput));
        assert_eq!(kind(Some("172.17.0.1")), Err(ErrorKind::Conflict));
        assert_eq!(kind(Some("172.17.0.2")), Err(ErrorKind::Conflict));
        assert_eq!(kind(Some("172.17.255.255")), Err(ErrorKind::InvalidInput));
        assert_eq!(kind(Some("172.17.9.9")), Ok(ip("172.17.9.9")));
    }

    #[test]
    fn small_subnet_exhausts() {
        let n = net("172.17.0.0/29");
        let gw = ip("172.17.0.1");
        let mut used = HashSet::new();
        for _ in 0..5 {
            used.insert(allocate(n, gw, &used, None).unwrap());
        }
        let err = allocate(n, gw, &used, None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Exhausted);
        assert!(err.message.contains("exhausted"), "{err}");
    }

    #[test]
    fn ipv6_subnets_allocate_the_same_way() {
        let n = net("fd00:1::/64");
        let gw = ip("fd00:1::1");
        let a = allocate(n, gw, &HashSet::new(), None).unwrap();
        assert_eq!(a, ip("fd00:1::2"));
    }

    #[test]
    fn mac_follows_docker() {
        assert_eq!(format_mac(mac_for(ip("172.17.0.2"))), "02:42:ac:11:00:02");
    }
}
