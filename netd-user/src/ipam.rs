//! IPv4 address management. Allocations are not stored on their own: the
//! set of used addresses is derived from the container records, so an
//! allocation can never outlive (or go missing from) its container.

use std::{collections::HashSet, net::Ipv4Addr};

use anyhow::{Result, bail};
use ipnetwork::Ipv4Network;

/// Picks an address for a new endpoint in `subnet`: `requested` if given
/// and valid, otherwise the lowest free host address (Docker's order:
/// gateway .1, first container .2).
pub fn allocate(
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    match requested {
        Some(ip) => check_requested(subnet, gateway, used, ip).map(|()| ip),
        None => first_free(subnet, gateway, used),
    }
}

fn check_requested(
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
    ip: Ipv4Addr,
) -> Result<()> {
    if !subnet.contains(ip) {
        bail!("address {ip} is outside the network's subnet {subnet}: pick one inside it");
    }
    if ip == subnet.network() || ip == subnet.broadcast() {
        bail!("address {ip} is the subnet's network or broadcast address: pick a host address");
    }
    if ip == gateway {
        bail!("address {ip} is the network's gateway: pick another address");
    }
    if used.contains(&ip) {
        bail!("address {ip} is already in use: pick another address or omit --ip");
    }
    Ok(())
}

fn first_free(
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let first = u32::from(subnet.network()).saturating_add(1);
    let last = u32::from(subnet.broadcast()).saturating_sub(1);
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !used.contains(ip))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "subnet {subnet} is exhausted: every address is in use; remove a container or use another network"
            )
        })
}

/// The MAC Docker derives from an address: 02:42 followed by the 4 bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
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

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn first_container_gets_dot_two_then_dot_three() {
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let mut used = HashSet::new();
        let a = allocate(net("172.17.0.0/16"), gw, &used, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 17, 0, 2));
        used.insert(a);
        let b = allocate(net("172.17.0.0/16"), gw, &used, None).unwrap();
        assert_eq!(b, Ipv4Addr::new(172, 17, 0, 3));
    }

    #[test]
    fn released_address_is_reused_first() {
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let used: HashSet<_> = [Ipv4Addr::new(172, 17, 0, 3)].into();
        let a = allocate(net("172.17.0.0/16"), gw, &used, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 17, 0, 2));
    }

    #[test]
    fn requested_address_is_checked() {
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let used: HashSet<_> = [Ipv4Addr::new(172, 17, 0, 2)].into();
        let n = net("172.17.0.0/16");
        assert!(allocate(n, gw, &used, Some(Ipv4Addr::new(10, 0, 0, 1))).is_err());
        assert!(allocate(n, gw, &used, Some(gw)).is_err());
        assert!(allocate(n, gw, &used, Some(Ipv4Addr::new(172, 17, 0, 2))).is_err());
        assert!(allocate(n, gw, &used, Some(Ipv4Addr::new(172, 17, 255, 255))).is_err());
        let ok = allocate(n, gw, &used, Some(Ipv4Addr::new(172, 17, 9, 9))).unwrap();
        assert_eq!(ok, Ipv4Addr::new(172, 17, 9, 9));
    }

    #[test]
    fn small_subnet_exhausts() {
        let n = net("172.17.0.0/29");
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let mut used = HashSet::new();
        for _ in 0..5 {
            used.insert(allocate(n, gw, &used, None).unwrap());
        }
        let err = allocate(n, gw, &used, None).unwrap_err().to_string();
        assert!(err.contains("exhausted"), "{err}");
    }

    #[test]
    fn mac_follows_docker() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
    }
}
