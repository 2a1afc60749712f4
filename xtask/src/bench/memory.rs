//! netd's memory: the daemon's RSS and the kernel memory of its maps, with
//! 10,000 published ports and a conntrack table filled by many short UDP
//! flows sent from ext to a published UDP port.

use std::{fs, path::Path, thread, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    bpf, interrupt, procs,
    results::Memory,
    rules::CONTAINER_IP,
    testbed::{Daemon, HOST_IP, Topology},
};

const UDP_PORT: u16 = 5353;
/// First source port of the flood; each flow is one source port.
const FLOOD_BASE: u32 = 10000;
const SETTLE: Duration = Duration::from_millis(500);

/// One UDP datagram from each of N source ports (no answer expected).
const FLOOD_PY: &str = r#"
import socket, sys
dst, port, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sent = 0
for sport in range(base, base + n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", sport))
        s.sendto(b"ct", (dst, port))
        sent += 1
    except OSError:
        pass
    finally:
        s.close()
print(sent)
"#;

/// `flows` UDP flows make 2 × `flows` conntrack entries (one per direction).
pub fn run(netd_bin: &Path, flows: u32) -> Result<Memory> {
    let topo = Topology::new()?;
    let daemon = Daemon::start(&topo, netd_bin)?;
    let udp = format!("{UDP_PORT}:{UDP_PORT}/udp");
    daemon.cli(&[
        "container",
        "add",
        &topo.container(1),
        "-p",
        "8080:80",
        "-p",
        &udp,
    ])?;
    let rss_idle_kib = settled_rss(&daemon)?;
    daemon.cli(&["portmap", "add", "10000-19999:172.17.0.2:10000-19999"])?;
    let rss_10k_kib = settled_rss(&daemon)?;
    interrupt::check()?;
    flood(&topo, flows)?;
    // New and assured flows live in two tables.
    let ct_entries = bpf::count_entries(&daemon.bpffs().join("NETD_CONNTRACK"))?
        + bpf::count_entries(&daemon.bpffs().join("NETD_CT_ASSURED"))?;
    Ok(Memory {
        rss_idle_kib,
        rss_10k_kib,
        rss_ct_kib: settled_rss(&daemon)?,
        ct_entries,
        maps: bpf::maps(daemon.bpffs())?,
    })
}

fn flood(topo: &Topology, flows: u32) -> Result<()> {
    if FLOOD_BASE + flows > 65536 {
        bail!("at most {} flows", 65536 - FLOOD_BASE);
    }
    let mut c = procs::in_ns(&topo.ext(), "python3");
    c.args(["-c", FLOOD_PY, HOST_IP, &UDP_PORT.to_string()])
        .args([flows.to_string(), FLOOD_BASE.to_string()]);
    let sent = procs::run_within(&mut c, Duration::from_secs(120))?;
    println!(
        "    sent {} UDP flows to {CONTAINER_IP} via {HOST_IP}:{UDP_PORT}",
        sent.trim()
    );
    thread::sleep(SETTLE);
    Ok(())
}

fn settled_rss(daemon: &Daemon) -> Result<u64> {
    thread::sleep(SETTLE);
    let pid = daemon.pid().context("the daemon has no PID")?;
    rss_kib(pid)
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}
