//! `cargo xtask bench`: netd against Docker's iptables rules, nftables,
//! plain routing and the host itself, side by side on the standard testbed
//! (docs/testbed.md), plus netd's control plane, memory and per-program
//! cost; with `--baseline-bin`, also netd against a previous binary. Writes `target/bench/report.md`, `results.json` and
//! `conn-rate.svg`; `--update-docs` also refreshes docs/BENCHMARKS.md.
//!
//! Module map: `testbed` (namespaces, daemon), `datapath` (the six
//! datapaths and the baseline netd), `rules` (iptables/nftables rule text), `measure` (servers,
//! wrk, iperf3, CPU), `suite` (one datapath's tests), `control`, `memory`,
//! `profile`, `bpf` (bpftool, run-time stats), `results`, `stats`,
//! `report`, `baseline` (the A/B section of the report), `plot`, `docs`, `procs` (bounded child processes),
//! `interrupt` (Ctrl-C → clean unwind), `dual` (the IPv6 part: both
//! families on a dual-stack testbed); the Docker section: `docker`
//! (dockerd in a testbed), `docker_suite` (its measurements),
//! `docker_report`.

mod baseline;
mod bpf;
mod control;
mod datapath;
mod docker;
mod docker_report;
mod docker_suite;
mod docs;
mod dual;
mod interrupt;
mod measure;
mod memory;
mod plot;
mod procs;
mod profile;
mod report;
mod results;
mod rules;
mod stats;
mod suite;
mod testbed;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{cmd, tasks};
use datapath::Kind;
use report::{Meta, Report};
use results::{Control, Memory, Profile, Samples};

#[derive(Args)]
pub struct BenchArgs {
    /// Smoke run (~2 min): one repeat, 2 s tests, 20 containers.
    #[arg(long)]
    quick: bool,
    /// Interleaved repeats of the data-plane tests [default: 3, --quick: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeats: Option<u32>,
    /// Seconds per wrk and iperf3 run [default: 4, --quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60))]
    secs: Option<u32>,
    /// Containers added and removed for the control-plane timing [default: 100, --quick: 20].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    containers: Option<u16>,
    /// Datapaths to compare (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    datapaths: Vec<Kind>,
    /// Parts to run (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    parts: Vec<Part>,
    /// Published port counts of the Docker section's `docker run` timing.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000",
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    docker_ports: Vec<u32>,
    /// Ports published besides the measured one in the Docker section's
    /// memory and connection-rate tests.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=10000))]
    docker_conn_ports: u32,
    /// Also write the report into docs/BENCHMARKS.md and the plot to docs/bench/.
    #[arg(long)]
    update_docs: bool,
    /// Benchmark this netd binary instead of building one (release).
    #[arg(long, value_name = "PATH")]
    netd_bin: Option<PathBuf>,
    /// Also benchmark this netd binary, as datapath netd-baseline in every
    /// repeat beside the others, and report netd's ratios against it.
    #[arg(long, value_name = "PATH")]
    baseline_bin: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Part {
    /// Throughput, request and connection rates, latency, port scaling.
    Dataplane,
    /// netd container add/rm and 10,000-port portmap add/rm.
    Control,
    /// netd daemon RSS and map memory with 10,000 ports and conntrack entries.
    Memory,
    /// netd's BPF program run times: connection rate, keep-alive, outbound.
    Profile,
    /// The profile over IPv4 and IPv6 connections on a dual-stack testbed.
    ProfileIpv6,
    /// IPv6 against IPv4 on a dual-stack testbed, netd against ip6tables
    /// and nftables NAT66: new connections/s, TCP in and out.
    Ipv6,
    /// Docker on netd against Docker with iptables and docker-proxy:
    /// `docker run -p` time, memory, new connections/s.
    Docker,
}

/// What one run does.
pub struct Plan {
    repeats: u32,
    http_secs: u32,
    iperf_secs: u32,
    containers: usize,
    /// UDP flows of the memory test (two conntrack entries each).
    flows: u32,
    kinds: Vec<Kind>,
    parts: Vec<Part>,
    /// The netd binary of `Kind::NetdBaseline`, if it is in `kinds`.
    baseline_bin: Option<PathBuf>,
    docker: docker_suite::DockerPlan,
}

impl Plan {
    fn from(args: &BenchArgs) -> Self {
        let secs = args.secs.unwrap_or(if args.quick { 2 } else { 4 });
        let pick = |v: &[Kind]| {
            let mut kinds = if v.is_empty() {
                Kind::ALL.to_vec()
            } else {
                v.to_vec()
            };
            // An A/B only holds within one run (sequential runs drift by
            // ±5 %), so the baseline is one more datapath of every repeat.
            if args.baseline_bin.is_some() {
                kinds.push(Kind::NetdBaseline);
            }
            kinds
        };
        Plan {
            repeats: args.repeats.unwrap_or(if args.quick { 1 } else { 3 }),
            http_secs: secs,
            iperf_secs: secs,
            containers: usize::from(args.containers.unwrap_or(if args.quick { 20 } else { 100 })),
            flows: 50_000,
            kinds: pick(&args.datapaths),
            parts: if args.parts.is_empty() {
                Part::value_variants().to_vec()
            } else {
                args.parts.clone()
            },
            baseline_bin: args.baseline_bin.clone(),
            docker: docker_suite::DockerPlan {
                ports: args.docker_ports.clone(),
                conn_ports: args.docker_conn_ports,
                repeats: args.repeats.unwrap_or(if args.quick { 1 } else { 3 }),
                secs,
            },
        }
    }

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// The netd binary `kind` runs: `netd_bin` but for the baseline.
    fn bin_for<'a>(&'a self, kind: Kind, netd_bin: &'a Path) -> Result<&'a Path> {
        match kind {
            Kind::NetdBaseline => self
                .baseline_bin
                .as_deref()
                .context("netd-baseline needs --baseline-bin"),
            _ => Ok(netd_bin),
        }
    }

    /// Seconds of each of the six connection-rate runs: half the time of
    /// a wrk run (each port count is measured twice), at most 2 s (see
    /// `suite::conn_run`).
    fn conn_secs(&self) -> u32 {
        (self.http_secs / 2).clamp(1, 2)
    }

    fn describe(&self) -> String {
        if self.parts == [Part::Docker] {
            return format!("Docker section only: {}", self.docker.describe());
        }
        if self.parts == [Part::Ipv6] {
            let kinds: Vec<&str> = dual::kinds_of(&self.kinds)
                .iter()
                .map(|k| k.name())
                .collect();
            return format!(
                "IPv6 part only: {} repeat(s) of [{}] on a dual-stack testbed; per family \
                 two connection-rate runs of {} s and one iperf3 run of {} s each way",
                self.repeats,
                kinds.join(", "),
                self.conn_secs(),
                self.iperf_secs
            );
        }
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        format!(
            "{} repeat(s) of [{}], interleaved (each repeat runs every datapath in turn, \
             rotating the order, each on a fresh testbed); wrk {} s per run (1 thread; 1 \
             connection for latency, 50 for rates), connection rate in runs of {} s in the \
             order 0, 1k, 10k, 10k, 1k, 0 ports; iperf3 {} s per run (1 stream); \
             {} containers for the control plane; {} UDP flows for the conntrack memory",
            self.repeats,
            kinds.join(", "),
            self.http_secs,
            self.conn_secs(),
            self.iperf_secs,
            self.containers,
            self.flows
        )
    }
}

/// Everything measured, as written to results.json.
#[derive(Serialize, Default)]
struct Outcome {
    samples: Samples,
    control: Option<Control>,
    memory: Option<Memory>,
    profile: Option<Profile>,
    docker: Option<docker_suite::DockerResults>,
    /// The IPv6 part (`dual`).
    ipv6: Option<Samples>,
}

const TOOLS: &[&str] = &[
    "wrk",
    "nginx",
    "iperf3",
    "iptables-restore",
    "ip6tables-restore",
    "nft",
    "bpftool",
    "python3",
    "curl",
    "nsenter",
    "ss",
];

/// The Docker section's (docker-proxy is found on dockerd's PATH).
const DOCKER_TOOLS: &[&str] = &[
    "/usr/sbin/dockerd",
    "/usr/bin/docker",
    "/usr/sbin/docker-proxy",
    "busybox",
    "iptables-save",
];

pub fn run(args: &BenchArgs) -> Result<()> {
    cmd::ensure_root("the benchmark creates network namespaces and loads eBPF")?;
    crate::setup::setup_bench()?;
    missing_tools(TOOLS)?;
    if args.parts.is_empty() || args.parts.contains(&Part::Docker) {
        missing_tools(DOCKER_TOOLS)?;
    }
    if let Some(base) = &args.baseline_bin
        && !base.is_file()
    {
        // Fail now, not after the first repeats' minutes.
        bail!("--baseline-bin {}: no such file", base.display());
    }
    let bin = match &args.netd_bin {
        Some(bin) => bin.clone(),
        None => tasks::build(true)?,
    };
    interrupt::install()?;
    let plan = Plan::from(args);
    let start = Instant::now();
    let load_start = loadavg();
    let outcome = measure_all(&plan, &bin)?;
    let meta = docs::meta(&plan, &bin, &load_start, start.elapsed());
    write_outputs(&plan, &meta, &outcome, args.update_docs)
}

fn measure_all(plan: &Plan, bin: &Path) -> Result<Outcome> {
    let mut out = Outcome::default();
    if plan.has(Part::Dataplane) {
        dataplane(plan, bin, &mut out.samples)?;
    }
    if plan.has(Part::Control) {
        println!(
            "==> control plane: {} x container add/rm, 10,000-port portmap",
            plan.containers
        );
        out.control = Some(control::run(bin, plan.containers)?);
    }
    if plan.has(Part::Memory) {
        println!("==> memory: 10,000 ports, {} UDP flows", plan.flows);
        out.memory = Some(memory::run(bin, plan.flows)?);
    }
    if plan.has(Part::Profile) {
        println!("==> profile: netd program run times during the connection-rate test");
        out.profile = Some(profile::run(bin, plan, false)?);
    }
    if plan.has(Part::ProfileIpv6) {
        println!("==> profile-ipv6: netd program run times, IPv4 and IPv6 connections");
        let dual = profile::run(bin, plan, true)?;
        match &mut out.profile {
            Some(p) => p.runs.extend(dual.runs),
            None => out.profile = Some(dual),
        }
    }
    if plan.has(Part::Ipv6) {
        println!("==> ipv6: IPv4 and IPv6 on a dual-stack testbed");
        out.ipv6 = Some(dual::run(bin, plan)?);
    }
    if plan.has(Part::Docker) {
        println!("==> docker: {}", plan.docker.describe());
        out.docker = Some(docker_suite::run(bin, &plan.docker)?);
    }
    Ok(out)
}

/// `for r in repeats { for datapath in (rotated) datapaths { measure } }`.
fn dataplane(plan: &Plan, bin: &Path, samples: &mut Samples) -> Result<()> {
    let n = plan.kinds.len();
    for r in 0..plan.repeats {
        for i in 0..n {
            interrupt::check()?;
            let kind = plan.kinds[(i + r as usize) % n];
            println!("==> repeat {}/{}: {kind}", r + 1, plan.repeats);
            let t = Instant::now();
            suite::run(kind, plan, plan.bin_for(kind, bin)?, r, samples)?;
            println!("    ({:.1} s)", t.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn write_outputs(plan: &Plan, meta: &Meta, out: &Outcome, update_docs: bool) -> Result<()> {
    let dir = cmd::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report = Report {
        meta,
        kinds: &plan.kinds,
        samples: &out.samples,
        control: out.control.as_ref(),
        memory: out.memory.as_ref(),
        profile: out.profile.as_ref(),
        docker: out.docker.as_ref(),
        ipv6: out.ipv6.as_ref(),
    }
    .markdown();
    let svg = dir.join("conn-rate.svg");
    let has_plot = plan.has(Part::Dataplane);
    if has_plot {
        plot::draw(&out.samples, &plan.kinds, &svg)?;
    }
    let md = format!(
        "# netd benchmark\n\n{report}{}",
        plot_link(has_plot, "conn-rate.svg")
    );
    write(&dir.join("report.md"), &md)?;
    let json = serde_json::to_string_pretty(out).context("cannot serialise the results")?;
    write(&dir.join("results.json"), &json)?;
    print!("\n{md}");
    println!(
        "\nwritten to {}/{{report.md,results.json,conn-rate.svg}}",
        dir.display()
    );
    if update_docs {
        let body = format!(
            "{report}{}",
            plot_link(has_plot, "docs/bench/conn-rate.svg")
        );
        docs::update(&body, has_plot.then_some(svg.as_path()))?;
    }
    Ok(())
}

fn plot_link(has_plot: bool, path: &str) -> String {
    if has_plot {
        format!(
            "### Connection rate against published ports\n\n![new connections/s against published ports]({path})\n"
        )
    } else {
        String::new()
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn missing_tools(tools: &[&str]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            let mut which = procs::command("sh");
            which.args(["-c", &format!("command -v {t}")]);
            procs::output_within(&mut which, Duration::from_secs(5))
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {} (run `cargo xtask setup` as root)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
