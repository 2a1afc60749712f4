//! The Docker section: Docker with its own iptables rules and docker-proxy
//! against Docker on netd, both dockerds up at once on two testbeds so
//! that every measurement alternates between them (the order rotating per
//! repeat). `docker run -d -p` wall time with N published ports; host
//! memory with `conn_ports` published; new connections/s through one
//! published port (nginx in the container's namespace, wrk from ext, as in
//! the data-plane part) with `conn_ports` other ports published.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    bpf,
    datapath::Target,
    docker::{DockerBed, Engine, ProcMem, proc_mem},
    interrupt,
    measure::{self, Http, HttpMode},
    procs::{self, Background},
    testbed::HOST_IP,
};

/// First host (and container) port of the published ranges.
pub const RANGE_BASE: u32 = 20000;
/// The measured port: `HTTP_PORT:80`.
pub const HTTP_PORT: u16 = 8080;
const SEGMENT_SECS: u32 = 2;
const SETTLE: Duration = Duration::from_millis(500);

/// What the Docker section does.
pub struct DockerPlan {
    pub ports: Vec<u32>,
    pub conn_ports: u32,
    pub repeats: u32,
    pub secs: u32,
}

impl DockerPlan {
    pub fn describe(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u32::to_string).collect();
        format!(
            "{} repeat(s), alternating the two engines; `docker run -d -p` with {} published ports; \
             memory and new connections/s ({} s per engine and repeat, in runs of at most {SEGMENT_SECS} s \
             from fresh source addresses) with {} other ports published",
            self.repeats,
            ports.join(", "),
            self.secs,
            self.conn_ports
        )
    }
}

#[derive(Serialize)]
pub struct RunSample {
    pub engine: Engine,
    pub ports: u32,
    pub repeat: u32,
    /// `docker run -d` of the container, whole CLI process.
    pub run_ms: f64,
    /// `docker rm -f` of it.
    pub rm_ms: f64,
}

#[derive(Serialize)]
pub struct ConnSample {
    pub engine: Engine,
    pub repeat: u32,
    pub rate: f64,
    pub p99_us: f64,
    pub cpu_us_per_req: f64,
    pub errors: u64,
}

/// Host memory with `ports` (+ the measured one) published.
#[derive(Serialize, Default)]
pub struct DockerMemory {
    pub ports: u32,
    /// Every docker-proxy of the iptables engine's dockerd.
    pub proxies: ProcMem,
    pub dockerd_iptables: ProcMem,
    pub dockerd_netd: ProcMem,
    /// netd daemon before any container ran and with the ports published.
    pub netd_before: ProcMem,
    pub netd_after: ProcMem,
    /// Total `bytes_memlock` of netd's pinned maps, before and after.
    pub netd_maps_before_kib: u64,
    pub netd_maps_after_kib: u64,
}

impl DockerMemory {
    /// netd's cost of the published ports, KiB: its RSS growth plus all of
    /// its map memory (preallocated, so most of it is there with 0 ports).
    pub fn netd_kib(&self) -> u64 {
        self.netd_after
            .rss_kib
            .saturating_sub(self.netd_before.rss_kib)
            + self.netd_maps_after_kib
    }

    /// What publishing the ports added to netd, KiB: RSS and map growth.
    pub fn netd_growth_kib(&self) -> u64 {
        self.netd_after
            .rss_kib
            .saturating_sub(self.netd_before.rss_kib)
            + self
                .netd_maps_after_kib
                .saturating_sub(self.netd_maps_before_kib)
    }
}

#[derive(Serialize)]
pub struct DockerResults {
    pub plan: String,
    pub port_counts: Vec<u32>,
    pub conn_ports: u32,
    pub runs: Vec<RunSample>,
    pub memory: DockerMemory,
    pub conn: Vec<ConnSample>,
    /// DNAT rules in the iptables engine's nat table with the ports
    /// published, and where the measured port's rule is in the DOCKER
    /// chain (1-based).
    pub dnat_rules: usize,
    pub http_rule_position: Option<usize>,
    /// Busy CPU of the machine, %, in 1 s before the section.
    pub idle_load: f64,
}

pub fn run(netd_bin: &Path, plan: &DockerPlan) -> Result<DockerResults> {
    let idle_load = measure::idle_load()?;
    let mut beds = Vec::new();
    for engine in Engine::ALL {
        interrupt::check()?;
        let t = Instant::now();
        beds.push(DockerBed::up(engine, netd_bin).with_context(|| format!("setting up {engine}"))?);
        println!(
            "    {engine}: dockerd up ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }
    let netd_before = netd_mem(&beds[1])?;
    let runs = run_times(&beds, plan)?;
    let servers = web(&beds, plan.conn_ports)?;
    thread::sleep(SETTLE);
    let netd_after = netd_mem(&beds[1])?;
    let memory = DockerMemory {
        ports: plan.conn_ports,
        proxies: beds[0].proxy_mem(),
        dockerd_iptables: proc_mem(&beds[0].dockerd_pid().into_iter().collect::<Vec<_>>()),
        dockerd_netd: proc_mem(&beds[1].dockerd_pid().into_iter().collect::<Vec<_>>()),
        netd_before: netd_before.0,
        netd_after: netd_after.0,
        netd_maps_before_kib: netd_before.1,
        netd_maps_after_kib: netd_after.1,
    };
    println!(
        "    memory: {} docker-proxy processes, PSS {} KiB (RSS {} KiB); netd RSS {} → {} KiB, maps {} KiB",
        memory.proxies.processes,
        memory.proxies.pss_kib,
        memory.proxies.rss_kib,
        memory.netd_before.rss_kib,
        memory.netd_after.rss_kib,
        memory.netd_maps_after_kib
    );
    let (dnat_rules, http_rule_position) = dnat_rules(&beds[0])?;
    let conn = conn_rates(&mut beds, plan)?;
    drop(servers);
    Ok(DockerResults {
        plan: plan.describe(),
        port_counts: plan.ports.clone(),
        conn_ports: plan.conn_ports,
        runs,
        memory,
        conn,
        dnat_rules,
        http_rule_position,
        idle_load,
    })
}

/// `20000:20000` or `20000-(20000+n-1):20000-(20000+n-1)`.
pub fn range(n: u32) -> String {
    let (first, last) = (RANGE_BASE, RANGE_BASE + n.max(1) - 1);
    if first == last {
        format!("{first}:{first}")
    } else {
        format!("{first}-{last}:{first}-{last}")
    }
}

fn run_times(beds: &[DockerBed], plan: &DockerPlan) -> Result<Vec<RunSample>> {
    // An untimed first container per engine: Docker activates a plugin
    // lazily, on its first use.
    for bed in beds {
        let args = bed.run_args("warmup", &[range(1)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bed.docker(&args)?;
        bed.docker(&["rm", "-f", "warmup"])?;
    }
    let mut out = Vec::new();
    for &ports in &plan.ports {
        for r in 0..plan.repeats {
            for i in 0..beds.len() {
                interrupt::check()?;
                let bed = &beds[(i + r as usize) % beds.len()];
                let name = format!("r{ports}x{r}");
                let args = bed.run_args(&name, &[range(ports)]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let t = Instant::now();
                bed.docker(&args)?;
                let run_ms = t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                bed.docker(&["rm", "-f", &name])?;
                let rm_ms = t.elapsed().as_secs_f64() * 1e3;
                println!(
                    "    {:<34} {ports:>5} ports: docker run {run_ms:>9.1} ms, rm -f {rm_ms:>9.1} ms",
                    bed.engine.title()
                );
                out.push(RunSample {
                    engine: bed.engine,
                    ports,
                    repeat: r,
                    run_ms,
                    rm_ms,
                });
            }
        }
    }
    Ok(out)
}

/// The measured container in each bed: `conn_ports` published, then
/// `8080:80`, nginx in its namespace; returns the nginx processes.
fn web(beds: &[DockerBed], conn_ports: u32) -> Result<Vec<Background>> {
    let mut servers = Vec::new();
    for bed in beds {
        interrupt::check()?;
        let mut publish = Vec::new();
        if conn_ports > 0 {
            publish.push(range(conn_ports));
        }
        publish.push(format!("{HTTP_PORT}:80"));
        let args = bed.run_args("web", &publish);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bed.docker(&args)?;
        let ns = bed.attach_netns("web")?;
        let nginx = measure::nginx_in(&bed.topo().tmp().join("nginx"), &ns, 80, false)?;
        measure::wait_http(&bed.topo().ext(), &http_target())
            .with_context(|| format!("nginx in the container on {}", bed.engine))?;
        servers.push(nginx);
    }
    Ok(servers)
}

fn http_target() -> Target {
    Target {
        ip: HOST_IP,
        port: HTTP_PORT,
    }
}

/// The netd daemon's memory and its maps' total memlock, KiB.
fn netd_mem(bed: &DockerBed) -> Result<(ProcMem, u64)> {
    let daemon = bed.daemon().context("the netd bed has no daemon")?;
    thread::sleep(SETTLE);
    let pid = daemon.pid().context("the daemon has no PID")?;
    let maps = bpf::maps(daemon.bpffs())?;
    let memlock: u64 = maps.iter().map(|m| m.bytes_memlock).sum();
    Ok((proc_mem(&[pid]), memlock / 1024))
}

/// DNAT rules in the nat table of the iptables bed, and the position of
/// the measured port's rule in the DOCKER chain.
fn dnat_rules(bed: &DockerBed) -> Result<(usize, Option<usize>)> {
    let mut c = procs::in_ns(&bed.topo().host(), "iptables-save");
    c.args(["-t", "nat"]);
    let text = procs::run_within(&mut c, Duration::from_secs(60))?;
    let file = bed.topo().tmp().join("nat.rules");
    fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
    let dnat = text.lines().filter(|l| l.contains("-j DNAT")).count();
    let needle = format!("--dport {HTTP_PORT} ");
    let pos = text
        .lines()
        .filter(|l| l.starts_with("-A DOCKER "))
        .position(|l| l.contains(&needle))
        .map(|p| p + 1);
    Ok((dnat, pos))
}

fn conn_rates(beds: &mut [DockerBed], plan: &DockerPlan) -> Result<Vec<ConnSample>> {
    let mut out = Vec::new();
    let n = beds.len();
    for r in 0..plan.repeats {
        for i in 0..n {
            let bed = &mut beds[(i + r as usize) % n];
            let mut parts = Vec::new();
            for _ in 0..plan.secs.div_ceil(SEGMENT_SECS).max(1) {
                interrupt::check()?;
                bed.fresh_source()?;
                parts.push(measure::wrk(
                    &bed.topo().ext(),
                    &http_target(),
                    HttpMode::Close,
                    plan.secs.min(SEGMENT_SECS),
                )?);
            }
            let all = Http::combine(&parts);
            println!(
                "    {:<34} new conn/s {:>9.0}  p99 {:>7.0} µs  errors {}",
                bed.engine.title(),
                all.rate,
                all.p99_us,
                all.errors
            );
            out.push(ConnSample {
                engine: bed.engine,
                repeat: r,
                rate: all.rate,
                p99_us: all.p99_us,
                cpu_us_per_req: all.cpu_us_per_req,
                errors: all.errors,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_start_at_the_base() {
        assert_eq!(range(1), "20000:20000");
        assert_eq!(range(1000), "20000-20999:20000-20999");
    }

    #[test]
    fn netd_memory_is_growth_plus_all_maps() {
        let m = DockerMemory {
            netd_before: ProcMem {
                processes: 1,
                rss_kib: 1000,
                pss_kib: 900,
            },
            netd_after: ProcMem {
                processes: 1,
                rss_kib: 1500,
                pss_kib: 1400,
            },
            netd_maps_after_kib: 300,
            ..DockerMemory::default()
        };
        assert_eq!(m.netd_kib(), 800);
    }
}
