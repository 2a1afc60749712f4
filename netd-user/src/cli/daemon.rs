//! `netd daemon`: runs the daemon in the foreground.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ipnetwork::Ipv4Network;
use netd_common::map_names;

use std::time::Duration;

use tracing::warn;

use crate::{
    engine::{EngineConfig, address_pool::AddressPool},
    kernel::{conntrack::Timeouts, datapath, host},
    server::{
        self, CT_MAX_DEFAULT, CT_MAX_LIMIT, CT_MAX_MIN, CT6_MAX_DEFAULT, DaemonConfig, NatPorts,
    },
};

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Where the state database lives.
    #[arg(long, default_value = "/var/lib/netd")]
    pub state_dir: PathBuf,
    /// bpffs directory for pinned maps and links (mounted if needed).
    #[arg(long, default_value = "/sys/fs/bpf/netd")]
    pub bpffs: PathBuf,
    /// Where named network namespaces are pinned (`ip netns` uses /run/netns).
    #[arg(long, default_value = "/run/netns")]
    pub netns_dir: PathBuf,
    /// Bridge device of the default `bridge` network.
    #[arg(long, default_value = "netd0")]
    pub bridge: String,
    /// Subnet of the default `bridge` network (gateway: its first address).
    #[arg(long, default_value = "172.17.0.0/16")]
    pub default_subnet: Ipv4Network,
    /// IPv6 subnet of the default `bridge` network, which makes it
    /// dual-stack (Docker's fixed-cidr-v6); default: none, IPv4 only.
    #[arg(long, value_name = "CIDR")]
    pub default_subnet6: Option<ipnetwork::Ipv6Network>,
    /// Where networks created without --subnet get theirs: subnets of
    /// prefix length N cut from CIDR (repeatable, used in order; Docker's
    /// syntax). Default: the /16s from 172.18.0.0 to 172.31.0.0.
    #[arg(long = "default-address-pool", value_name = "base=CIDR,size=N")]
    pub address_pools: Vec<AddressPool>,
    /// Interface where published ports are reachable (repeatable); default:
    /// the interface of the IPv4 default route.
    #[arg(long = "uplink", value_name = "IFACE")]
    pub uplinks: Vec<String>,
    /// Seconds between conntrack garbage collections.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_gc_interval: u64,
    /// Idle timeout of established TCP flows, seconds.
    #[arg(long, default_value_t = 21600, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_tcp_timeout: u64,
    /// Idle timeout of answered UDP flows, seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_udp_timeout: u64,
    /// Idle timeout of TCP flows that got no answer yet, seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_tcp_unreplied_timeout: u64,
    /// Idle timeout of closing TCP flows (RST, or FIN both ways), seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_tcp_closing_timeout: u64,
    /// Idle timeout of UDP flows that got no answer, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_udp_unreplied_timeout: u64,
    /// Idle timeout of ICMP echo flows, seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub ct_icmp_timeout: u64,
    /// Flows the conntrack tables hold (two entries each, about 256 bytes
    /// of kernel memory per flow, allocated at start); a full table drops
    /// new flows. Default: the size of the pinned tables, else 131072.
    /// Fixed while the maps are pinned: another size needs `netd down`
    /// first.
    #[arg(long, value_name = "FLOWS",
          value_parser = clap::value_parser!(u32).range(CT_MAX_MIN as i64..=CT_MAX_LIMIT as i64))]
    pub ct_max: Option<u32>,
    /// Flows the IPv6 conntrack tables hold (about 350 bytes of kernel
    /// memory per flow in each of the two tables); as `--ct-max`, with the
    /// same default.
    #[arg(long, value_name = "FLOWS",
          value_parser = clap::value_parser!(u32).range(CT_MAX_MIN as i64..=CT_MAX_LIMIT as i64))]
    pub ct6_max: Option<u32>,
    /// MASQUERADE source ports: a flow keeps its own port when free, else
    /// gets one of MIN-MAX.
    #[arg(long, value_name = "MIN-MAX", default_value = "1024-65535")]
    pub nat_ports: NatPorts,
    /// Resolver the embedded DNS forwards unknown names to (repeatable);
    /// default: the host's resolvers from /etc/resolv.conf.
    #[arg(long = "dns-upstream", value_name = "IP")]
    pub dns_upstreams: Vec<std::net::Ipv4Addr>,
    /// Serve Docker's network and IPAM plugin API under this name
    /// (`docker network create -d NAME --ipam-driver NAME`), on
    /// <docker-plugin-dir>/NAME.sock; `none` turns it off.
    #[arg(long, value_name = "NAME", default_value = "netd")]
    pub docker_plugin: String,
    /// Where Docker looks for plugin sockets.
    #[arg(long, value_name = "DIR", default_value = crate::docker::PLUGIN_DIR)]
    pub docker_plugin_dir: PathBuf,
}

pub fn run(args: DaemonArgs, socket: &Path) -> Result<()> {
    let absolute = |p: &Path| {
        std::path::absolute(p).with_context(|| format!("resolving path {}", p.display()))
    };
    let (ct_max, ct6_max) = (args.ct_max, args.ct6_max);
    let mut config = DaemonConfig {
        state_dir: absolute(&args.state_dir)?,
        bpffs: absolute(&args.bpffs)?,
        socket: absolute(socket)?,
        engine: EngineConfig {
            netns_dir: absolute(&args.netns_dir)?,
            default_bridge: args.bridge,
            default_subnet: args.default_subnet.into(),
            default_subnet6: args.default_subnet6.map(Into::into),
            address_pools: if args.address_pools.is_empty() {
                AddressPool::defaults()
            } else {
                args.address_pools
            },
        },
        uplinks: args.uplinks,
        ct_timeouts: Timeouts {
            tcp_established: Duration::from_secs(args.ct_tcp_timeout),
            tcp_unreplied: Duration::from_secs(args.ct_tcp_unreplied_timeout),
            tcp_closing: Duration::from_secs(args.ct_tcp_closing_timeout),
            udp: Duration::from_secs(args.ct_udp_timeout),
            udp_unreplied: Duration::from_secs(args.ct_udp_unreplied_timeout),
            icmp: Duration::from_secs(args.ct_icmp_timeout),
        },
        ct_max_flows: ct_max.unwrap_or(CT_MAX_DEFAULT),
        ct6_max_flows: ct6_max.unwrap_or(CT6_MAX_DEFAULT),
        nat_ports: args.nat_ports,
        ct_gc_interval: Duration::from_secs(args.ct_gc_interval),
        dns_upstreams: args.dns_upstreams.into_iter().map(Into::into).collect(),
        docker_plugin: docker_plugin(&args.docker_plugin, &args.docker_plugin_dir)?,
    };
    // Before any thread exists (see the function).
    if host::join_host_mount_namespace()? {
        warn!(
            "the daemon was started in a private mount namespace (`ip netns exec`?); it joined the host's, so that its namespaces and pins are visible to everyone"
        );
    }
    // Pins are visible now. Without a flag, pinned tables keep their
    // size: a restart needs no flag the first start was given.
    let pinned = |table| datapath::pinned_flows(&config.bpffs, table);
    if let (None, Some(flows)) = (ct_max, pinned(map_names::CONNTRACK)) {
        config.ct_max_flows = flows;
    }
    if let (None, Some(flows)) = (ct6_max, pinned(map_names::CT6)) {
        config.ct6_max_flows = flows;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(config))
}

/// `--docker-plugin NAME`: the socket path, or None for `none`.
fn docker_plugin(name: &str, dir: &Path) -> Result<Option<PathBuf>> {
    if name == "none" || name.is_empty() {
        return Ok(None);
    }
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        anyhow::bail!(
            "invalid --docker-plugin {name:?}: a plugin name is letters, digits, '-', '_' and '.' (or none to turn the plugin off)"
        );
    }
    let dir =
        std::path::absolute(dir).with_context(|| format!("resolving path {}", dir.display()))?;
    Ok(Some(crate::docker::socket_path(&dir, name)))
}
