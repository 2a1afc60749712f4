//! Control plane of netd: `container add`/`rm` and a 10,000-port
//! `portmap add`/`rm`, each timed as a whole CLI process.

use std::{path::Path, time::Instant};

use anyhow::Result;

use super::{
    interrupt,
    results::Control,
    rules::CONTAINER_IP,
    stats::Summary,
    testbed::{Daemon, Topology},
};

/// Times of the 10,000-port range add/rm, repeated.
const PORTMAP_REPEATS: usize = 5;
const RANGE: &str = "10000-19999";

pub fn run(netd_bin: &Path, containers: usize) -> Result<Control> {
    let topo = Topology::new()?;
    let daemon = Daemon::start(&topo, netd_bin)?;
    let (add_ms, rm_ms) = containers_add_rm(&topo, &daemon, containers)?;
    let (portmap_add_10k_ms, portmap_rm_10k_ms) = portmap_range(&topo, &daemon)?;
    Ok(Control {
        containers,
        add_ms,
        rm_ms,
        portmap_add_10k_ms,
        portmap_rm_10k_ms,
    })
}

fn containers_add_rm(topo: &Topology, daemon: &Daemon, n: usize) -> Result<(Summary, Summary)> {
    let mut times = [Vec::with_capacity(n), Vec::with_capacity(n)];
    for (i, op) in ["add", "rm"].into_iter().enumerate() {
        for c in 1..=n {
            interrupt::check()?;
            times[i].push(timed(daemon, &["container", op, &topo.container(c)])?);
        }
    }
    let [add, rm] = times;
    Ok((Summary::of(add)?, Summary::of(rm)?))
}

/// One container with a 10,000-port range published and removed again.
fn portmap_range(topo: &Topology, daemon: &Daemon) -> Result<(Summary, Summary)> {
    daemon.cli(&["container", "add", &topo.container(1)])?;
    let spec = format!("{RANGE}:{CONTAINER_IP}:{RANGE}");
    let (mut add, mut rm) = (Vec::new(), Vec::new());
    for _ in 0..PORTMAP_REPEATS {
        interrupt::check()?;
        add.push(timed(daemon, &["portmap", "add", &spec])?);
        rm.push(timed(daemon, &["portmap", "rm", &spec])?);
    }
    Ok((Summary::of(add)?, Summary::of(rm)?))
}

/// Milliseconds of one successful `netd ARGS` process.
fn timed(daemon: &Daemon, args: &[&str]) -> Result<f64> {
    let start = Instant::now();
    daemon.cli(args)?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}
