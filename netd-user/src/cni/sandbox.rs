//! What CHECK looks at inside the container's namespace: the interface,
//! its addresses and the default route. Read from a thread that joined the
//! namespace (setns is per thread), so the plugin's own namespace never
//! changes.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use nix::{
    ifaddrs::getifaddrs,
    net::if_::InterfaceFlags,
    sched::{CloneFlags, setns},
};

/// One interface as seen in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    /// Addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
}

/// What CHECK reads in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    /// The interface (None: no such interface).
    pub iface: Option<Seen>,
    /// The IPv4 default route's gateway.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 default routes' gateways (a dual-stack container has one).
    pub gateways6: Vec<Ipv6Addr>,
}

/// The interface `ifname` inside `netns` and the default routes there.
pub fn look(netns: &Path, ifname: &str) -> Result<Look, String> {
    let file = File::open(netns).map_err(|e| format!("opening {}: {e}", netns.display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering {}: {e}", netns.display()))?;
                Ok(Look {
                    iface: interface(ifname)?,
                    gateway: default_gateway()?,
                    gateways6: default_gateways6()?,
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the namespace reader panicked".into()))
    })
}

/// `ifname` in the calling thread's namespace.
pub fn interface(ifname: &str) -> Result<Option<Seen>, String> {
    let mut seen: Option<Seen> = None;
    for entry in getifaddrs().map_err(|e| format!("listing interfaces: {e}"))? {
        if entry.interface_name != ifname {
            continue;
        }
        let it = seen.get_or_insert_with(Seen::default);
        it.up |= entry.flags.contains(InterfaceFlags::IFF_UP);
        let Some(addr) = entry.address else { continue };
        if let Some(link) = addr.as_link_addr() {
            it.mac = link.addr();
        } else if let Some(v4) = addr.as_sockaddr_in() {
            let prefix = entry
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).count_ones()))
                .unwrap_or(32);
            it.addrs.push((IpAddr::V4(v4.ip()), prefix as u8));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let prefix = entry
                .netmask
                .and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).count_ones()))
                .unwrap_or(128);
            it.addrs.push((IpAddr::V6(v6.ip()), prefix as u8));
        }
    }
    Ok(seen)
}

/// The gateway of the main table's IPv4 default route, from the calling
/// thread's view of `/proc/net/route`.
fn default_gateway() -> Result<Option<Ipv4Addr>, String> {
    let table = std::fs::read_to_string("/proc/thread-self/net/route")
        .map_err(|e| format!("reading the routes: {e}"))?;
    Ok(table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (dst, gw, mask) = (cols.get(1)?, cols.get(2)?, cols.get(7)?);
        if *dst != "00000000" || *mask != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(gw, 16).ok()?;
        // The kernel prints the raw network-order word in hex, so the
        // native-order bytes of the parsed number are the address.
        Some(Ipv4Addr::from(gw.to_ne_bytes()))
    }))
}

/// The gateways of the IPv6 default routes (`::/0` via an address), from
/// the calling thread's view of `/proc/net/ipv6_route`: destination,
/// its prefix length, source, its prefix length, next hop, in hex.
fn default_gateways6() -> Result<Vec<Ipv6Addr>, String> {
    let table = match std::fs::read_to_string("/proc/thread-self/net/ipv6_route") {
        Ok(table) => table,
        // IPv6 disabled in this kernel: no IPv6 routes.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading the IPv6 routes: {e}")),
    };
    Ok(parse_gateways6(&table))
}

fn parse_gateways6(table: &str) -> Vec<Ipv6Addr> {
    table
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (dst, len, hop) = (cols.first()?, cols.get(1)?, cols.get(4)?);
            if u128::from_str_radix(dst, 16).ok()? != 0 || *len != "00" {
                return None;
            }
            let hop = Ipv6Addr::from(u128::from_str_radix(hop, 16).ok()?);
            (!hop.is_unspecified()).then_some(hop)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ipam::format_mac;

    #[test]
    fn loopback_is_seen_here() {
        let lo = interface("lo").unwrap().expect("lo exists");
        assert!(lo.up);
        assert!(lo.addrs.contains(&(IpAddr::V4(Ipv4Addr::LOCALHOST), 8)));
        assert!(interface("no-such-if0").unwrap().is_none());
        assert_eq!(format_mac([2, 0x42, 0xac, 0x11, 0, 2]), "02:42:ac:11:00:02");
    }

    #[test]
    fn ipv6_default_gateways_from_the_route_table() {
        let table = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000077000000000000000000000001 00000400 00000001 00000000 00000003     eth0
fd000077000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        assert_eq!(
            parse_gateways6(table),
            ["fd00:77::1".parse::<Ipv6Addr>().unwrap()]
        );
    }
}
