//! What the daemon runs with: every path and name it touches (tests
//! override them all to run isolated daemons side by side), the engine's
//! configuration and the datapath's settings.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use crate::{engine::EngineConfig, kernel::conntrack::Timeouts};

/// `--ct-max`: flows in the conntrack table (two entries each). The
/// default is the table size before the flag existed; the bounds keep a
/// typo from making a useless table or one of gigabytes.
pub const CT_MAX_DEFAULT: u32 = 131_072;
pub const CT_MAX_MIN: u32 = 1024;
pub const CT_MAX_LIMIT: u32 = 16 << 20;

/// `--ct6-max`: flows in each IPv6 conntrack table, with the bounds of
/// `--ct-max`. As many as IPv4's: a dual-stack host may carry most of its
/// connections over either family.
pub const CT6_MAX_DEFAULT: u32 = 131_072;

/// `--nat-ports MIN-MAX`: MASQUERADE source ports, used when a flow's own
/// port is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPorts {
    pub min: u16,
    pub max: u16,
}

impl std::str::FromStr for NatPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid port range {s:?}: expected MIN-MAX with 1 <= MIN <= MAX <= 65535, e.g. 1024-65535"
            )
        };
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        let min: u16 = min.trim().parse().map_err(|_| bad())?;
        let max: u16 = max.trim().parse().map_err(|_| bad())?;
        if min == 0 || min > max {
            return Err(bad());
        }
        Ok(Self { min, max })
    }
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub engine: EngineConfig,
    /// Interfaces where published ports are reachable from outside; empty:
    /// the interface of the default route.
    pub uplinks: Vec<String>,
    pub ct_timeouts: Timeouts,
    pub ct_gc_interval: Duration,
    /// `--ct-max`: flows; each table holds twice as many entries.
    pub ct_max_flows: u32,
    /// `--ct6-max`: the same for the IPv6 tables.
    pub ct6_max_flows: u32,
    pub nat_ports: NatPorts,
    /// Where the embedded DNS forwards names it does not know (empty: the
    /// host's resolvers).
    pub dns_upstreams: Vec<IpAddr>,
    /// The Docker plugin's socket (`/run/docker/plugins/<name>.sock`);
    /// None: no Docker plugin.
    pub docker_plugin: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::NatPorts;

    #[test]
    fn nat_ports_parse() {
        assert_eq!(
            "40000-40003".parse::<NatPorts>(),
            Ok(NatPorts {
                min: 40000,
                max: 40003
            })
        );
        for bad in ["", "1024", "0-10", "10-9", "1-65536", "a-b"] {
            assert!(bad.parse::<NatPorts>().is_err(), "{bad}");
        }
    }
}
