//! `netd daemon`: runs the daemon in the foreground.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ipnetwork::Ipv4Network;

use crate::daemon::{self, DaemonConfig};

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
}

pub fn run(args: DaemonArgs, socket: &Path) -> Result<()> {
    let config = DaemonConfig {
        state_dir: args.state_dir,
        bpffs: args.bpffs,
        socket: socket.to_owned(),
        netns_dir: args.netns_dir,
        bridge: args.bridge,
        default_subnet: args.default_subnet,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(config))
}
