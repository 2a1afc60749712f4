//! Subnet and gateway rules shared by networks and address pools.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::error::{Error, Result};

/// Two subnets share addresses.
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Refuses a subnet with host bits set, in Docker's words: 10.77.6.5/24
/// most likely means a typo, not 10.77.6.0/24.
pub fn check_subnet(subnet: IpNetwork) -> Result<IpNetwork> {
    if subnet.ip() != subnet.network() {
        return Err(Error::invalid(format!(
            "invalid subnet {subnet}: it should be {}/{}",
            subnet.network(),
            subnet.prefix()
        )));
    }
    Ok(subnet)
}

/// An IPv6 subnet for containers: no host bits, room for more than a
/// handful of addresses (sequential allocation wants a range to walk).
pub fn check_subnet6(subnet: IpNetwork) -> Result<IpNetwork> {
    let subnet = check_subnet(subnet)?;
    if subnet.prefix() > 120 {
        return Err(Error::invalid(format!(
            "IPv6 subnet {subnet} is too small: use a /120 or larger (a /64 is usual)"
        )));
    }
    Ok(subnet)
}

/// The subnet's first host address: the default gateway.
pub fn first_host(subnet: IpNetwork) -> Result<IpAddr> {
    let no_room = || Error::invalid(format!("subnet {subnet} has no room for a gateway"));
    match subnet {
        IpNetwork::V4(n) => n
            .nth(1)
            .filter(|ip| *ip != n.broadcast())
            .map(IpAddr::V4)
            .ok_or_else(no_room),
        IpNetwork::V6(n) => {
            let first = u128::from(n.network()).checked_add(1).ok_or_else(no_room)?;
            let ip = std::net::Ipv6Addr::from(first);
            if n.prefix() >= 127 || !n.contains(ip) {
                return Err(no_room());
            }
            Ok(IpAddr::V6(ip))
        }
    }
}

/// A gateway must be a host address of its subnet.
pub fn check_gateway(subnet: IpNetwork, gateway: IpAddr) -> Result<IpAddr> {
    let broadcast = match subnet {
        IpNetwork::V4(n) => Some(IpAddr::V4(n.broadcast())),
        IpNetwork::V6(_) => None,
    };
    if !subnet.contains(gateway) || gateway == subnet.network() || Some(gateway) == broadcast {
        return Err(Error::invalid(format!(
            "gateway {gateway} is not a host address of subnet {subnet}: pick one inside it"
        )));
    }
    Ok(gateway)
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
        let a: IpNetwork = "172.18.0.0/16".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(a, "172.18.5.0/24".parse().unwrap()));
        assert!(!overlaps(a, "172.19.0.0/16".parse().unwrap()));
        assert!(check_gateway(a, ip("172.18.0.254")).is_ok());
        assert!(check_gateway(a, ip("172.19.0.1")).is_err());
        assert!(check_gateway(a, ip("172.18.255.255")).is_err());
        assert_eq!(first_host(a).unwrap(), ip("172.18.0.1"));
        assert_eq!(
            first_host("fd00:5::/64".parse().unwrap()).unwrap(),
            ip("fd00:5::1")
        );
    }
}
