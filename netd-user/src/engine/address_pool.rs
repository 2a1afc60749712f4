//! Default address pools: where `network create` without `--subnet` takes
//! its subnet from. Docker's `--default-address-pool base=CIDR,size=N`:
//! each pool is cut into subnets of prefix length N, handed out lowest
//! first, pools in the order given.

use std::{net::Ipv4Addr, str::FromStr};

use ipnetwork::{IpNetwork, Ipv4Network};

use super::{
    error::{Error, Remedy, Result},
    subnets::{check_subnet, overlaps},
};

/// The prefix length above which a subnet has no room for a gateway and a
/// container.
const MAX_SIZE: u8 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Ipv4Network,
    /// Prefix length of the subnets cut from `base`.
    pub size: u8,
}

impl AddressPool {
    /// What netd uses without `--default-address-pool`: the /16s from
    /// 172.18.0.0 to 172.31.0.0, as Docker's first default pool (172.17 is
    /// the default bridge's).
    pub fn defaults() -> Vec<AddressPool> {
        (18..=31u8)
            .filter_map(|b| Ipv4Network::new(Ipv4Addr::new(172, b, 0, 0), 16).ok())
            .map(|base| AddressPool { base, size: 16 })
            .collect()
    }

    /// The lowest subnet of the pool that overlaps none of `taken`.
    fn first_free(&self, taken: &[IpNetwork]) -> Option<IpNetwork> {
        let step = 1u64 << (32 - self.size);
        let end = u64::from(u32::from(self.base.broadcast())) + 1;
        let mut start = u64::from(u32::from(self.base.network()));
        while start < end {
            let ip = Ipv4Addr::from(u32::try_from(start).ok()?);
            let candidate = IpNetwork::V4(Ipv4Network::new(ip, self.size).ok()?);
            match taken.iter().find(|t| overlaps(**t, candidate)) {
                None => return Some(candidate),
                // Jump past the taken subnet rather than stepping through
                // it: a /8 pool cut into /30s has millions of candidates.
                Some(IpNetwork::V4(t)) => {
                    let past = u64::from(u32::from(t.broadcast())) + 1;
                    start = past.max(start + step).next_multiple_of(step);
                }
                Some(IpNetwork::V6(_)) => start += step,
            }
        }
        None
    }
}

/// The subnet for a new network: the first free one of the pools, in order.
pub fn next_free_subnet(pools: &[AddressPool], taken: &[IpNetwork]) -> Result<IpNetwork> {
    pools.iter().find_map(|p| p.first_free(taken)).ok_or_else(|| {
        Error::exhausted(
            "every subnet of the default address pools is taken: give the network a subnet, or configure more default address pools",
        )
        .with_remedy(Remedy::GrowAddressPools)
    })
}

/// Where dual-stack networks without an IPv6 subnet take theirs: the /64s
/// of fd00:6e65:7464::/48 (ULA; "netd" in hex), lowest free first.
pub const IPV6_POOL: &str = "fd00:6e65:7464::/48";

/// The IPv6 subnet for a new dual-stack network: the first /64 of
/// `IPV6_POOL` that overlaps none of `taken`.
pub fn next_free_subnet6(taken: &[IpNetwork]) -> Result<IpNetwork> {
    let base: u128 = match IPV6_POOL.parse::<IpNetwork>() {
        Ok(IpNetwork::V6(n)) => u128::from(n.network()),
        _ => 0,
    };
    (0..=0xffffu128)
        .filter_map(|i| {
            let ip = std::net::Ipv6Addr::from(base | (i << 64));
            ipnetwork::Ipv6Network::new(ip, 64).ok().map(IpNetwork::V6)
        })
        .find(|candidate| !taken.iter().any(|t| overlaps(*t, *candidate)))
        .ok_or_else(|| {
            Error::exhausted(format!(
                "every /64 of the IPv6 pool {IPV6_POOL} is taken: give the network an IPv6 subnet"
            ))
        })
}

/// `base=CIDR,size=N`, as Docker's `--default-address-pool`.
impl FromStr for AddressPool {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (mut base, mut size) = (None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => base = Some(parse_base(v)?),
                Some(("size", v)) => {
                    size = Some(v.parse::<u8>().map_err(|_| {
                        format!("size {v:?} is not a prefix length: use base=CIDR,size=N")
                    })?)
                }
                _ => return Err(format!("{part:?} is not base=CIDR or size=N")),
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            return Err("both base and size are needed: use base=CIDR,size=N".into());
        };
        if size < base.prefix() || size > MAX_SIZE {
            return Err(format!(
                "size {size} does not fit base {base}: use a size from {} to {MAX_SIZE}",
                base.prefix()
            ));
        }
        Ok(AddressPool { base, size })
    }
}

fn parse_base(v: &str) -> Result<Ipv4Network, String> {
    let base: Ipv4Network = v
        .parse()
        .map_err(|_| format!("base {v:?} is not an IPv4 CIDR: use base=CIDR,size=N"))?;
    check_subnet(IpNetwork::V4(base)).map_err(|e| e.to_string())?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn net4(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    fn pool(s: &str) -> AddressPool {
        s.parse().unwrap()
    }

    #[test]
    fn parses_docker_syntax() {
        assert_eq!(
            pool("base=10.99.0.0/16,size=24"),
            AddressPool {
                base: net4("10.99.0.0/16"),
                size: 24
            }
        );
        assert_eq!(pool("size=24,base=10.99.0.0/16").size, 24);
        for bad in [
            "base=10.99.0.0/16",
            "size=24",
            "base=10.99.0.1/16,size=24",
            "base=10.99.0.0/16,size=8",
            "base=10.99.0.0/16,size=31",
            "base=nope,size=24",
            "base=10.99.0.0/16,size=24,extra=1",
        ] {
            assert!(bad.parse::<AddressPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hands_out_subnets_in_order_skipping_taken_ones() {
        let pools = [pool("base=10.99.0.0/16,size=24")];
        let mut taken = Vec::new();
        for i in 0..20u8 {
            let subnet = next_free_subnet(&pools, &taken).unwrap();
            assert_eq!(subnet, net(&format!("10.99.{i}.0/24")));
            taken.push(subnet);
        }
        taken.remove(3);
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            net("10.99.3.0/24")
        );
    }

    #[test]
    fn skips_overlaps_larger_and_smaller_than_the_size() {
        let pools = [pool("base=10.0.0.0/8,size=24")];
        // A /16 covering the start, then a /28 inside the next /24.
        let taken = [net("10.0.0.0/16"), net("10.1.0.16/28")];
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            net("10.1.1.0/24")
        );
        // A huge pool of tiny subnets is not walked one by one.
        let pools = [pool("base=10.0.0.0/8,size=30")];
        let taken = [net("10.0.0.0/9")];
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            net("10.128.0.0/30")
        );
    }

    #[test]
    fn pools_are_used_in_order_and_run_out() {
        let pools = [
            pool("base=10.98.0.0/23,size=24"),
            pool("base=192.168.0.0/16,size=20"),
        ];
        let taken = [net("10.98.0.0/24"), net("10.98.1.0/24")];
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            net("192.168.0.0/20")
        );
        let err = next_free_subnet(&pools[..1], &taken).unwrap_err();
        assert_eq!(err.remedy, Some(Remedy::GrowAddressPools), "{err}");
    }

    #[test]
    fn defaults_are_the_docker_16s_from_172_18() {
        let pools = AddressPool::defaults();
        assert_eq!(pools.len(), 14);
        let taken = [net("172.17.0.0/16"), net("172.18.0.0/16")];
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            net("172.19.0.0/16")
        );
    }
}
