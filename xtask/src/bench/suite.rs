//! One pass of the data-plane tests over one datapath.

use std::path::Path;

use anyhow::{Context, Result};

use super::{
    Plan,
    datapath::{Bed, Family, Kind, Target},
    interrupt,
    measure::{self, Http, HttpMode, Servers, Tcp},
    results::{Metric, PORT_STEPS, Samples},
};

/// Builds `kind`'s datapath, measures it, tears it down.
pub fn run(kind: Kind, plan: &Plan, netd_bin: &Path, repeat: u32, out: &mut Samples) -> Result<()> {
    let mut bed = Bed::up(kind, netd_bin).with_context(|| format!("setting up {kind}"))?;
    let servers = Servers::start(&bed).with_context(|| format!("starting servers on {kind}"))?;
    let mut rec = |metric: Metric, value: f64| out.push(repeat, kind, metric, value);
    rec(Metric::IdleLoad, measure::idle_load()?);
    tcp_tests(&bed, plan, &mut rec)?;
    http_tests(&bed, plan, &mut rec)?;
    conn_tests(&mut bed, plan, &mut rec)?;
    drop(servers);
    Ok(())
}

/// Latency over one connection, then requests/s over 50 keep-alive ones.
fn http_tests(bed: &Bed, plan: &Plan, rec: &mut impl FnMut(Metric, f64)) -> Result<()> {
    let lat = http(bed, HttpMode::Latency, plan)?;
    rec(Metric::LatP50, lat.p50_us);
    rec(Metric::LatP99, lat.p99_us);
    let keep = http(bed, HttpMode::KeepAlive, plan)?;
    rec(Metric::ReqRate, keep.rate);
    Ok(())
}

fn tcp_tests(bed: &Bed, plan: &Plan, rec: &mut impl FnMut(Metric, f64)) -> Result<()> {
    let secs = plan.iperf_secs;
    interrupt::check()?;
    let inbound = tcp(bed, "inbound", &bed.topo().ext(), &bed.iperf_in(), secs)?;
    rec(Metric::TcpIn, inbound.gbps);
    rec(Metric::TcpInCpu, inbound.cpu_s_per_gb);
    interrupt::check()?;
    let outbound = tcp(
        bed,
        "outbound",
        &bed.outbound_client_ns(),
        &Bed::ext_server(),
        secs,
    )?;
    rec(Metric::TcpOut, outbound.gbps);
    rec(Metric::TcpOutCpu, outbound.cpu_s_per_gb);
    if let Some((client, server)) = bed.c2c() {
        interrupt::check()?;
        let c2c = tcp(bed, "c2c", &client, &server, secs)?;
        rec(Metric::TcpC2c, c2c.gbps);
        rec(Metric::TcpC2cCpu, c2c.cpu_s_per_gb);
    }
    Ok(())
}

/// New connections/s with 0, 1,000 and 10,000 other published ports, in
/// the order 0, 1k, 10k, 10k, 1k, 0 (half the time each), so that a drift
/// during the run (conntrack filling up, other load) falls equally on every
/// port count. Datapaths without published ports run 0, 0.
fn conn_tests(bed: &mut Bed, plan: &Plan, rec: &mut impl FnMut(Metric, f64)) -> Result<()> {
    let order: Vec<u32> = if bed.kind.publishes() {
        PORT_STEPS
            .iter()
            .chain(PORT_STEPS.iter().rev())
            .copied()
            .collect()
    } else {
        vec![0, 0]
    };
    let secs = plan.conn_secs();
    let mut runs: Vec<(u32, Http)> = Vec::new();
    for ports in order {
        interrupt::check()?;
        let took = bed.set_extra(ports)?;
        let first_time = !runs.iter().any(|(p, _)| *p == ports);
        if let (Some(took), true) = (took, first_time) {
            rec(Metric::PublishMs { ports }, took.as_secs_f64() * 1e3);
        }
        runs.push((ports, conn_run(bed, secs)?));
    }
    for ports in PORT_STEPS {
        let parts: Vec<Http> = runs
            .iter()
            .filter(|(p, _)| *p == ports)
            .map(|(_, h)| h.clone())
            .collect();
        if parts.is_empty() {
            continue;
        }
        let all = Http::combine(&parts);
        rec(Metric::ConnRate { ports }, all.rate);
        if ports == 0 {
            rec(Metric::ConnP99, all.p99_us);
            rec(Metric::ConnCpu, all.cpu_us_per_req);
        }
    }
    Ok(())
}

/// One `Connection: close` run from a fresh source address
/// (`Bed::fresh_source`): at most 2 s, about the 64,000 ports of one
/// address at 30,000 conn/s, so no 4-tuple is used twice.
fn conn_run(bed: &mut Bed, secs: u32) -> Result<Http> {
    conn_run_in(bed, Family::V4, secs)
}

/// `conn_run` over `family` (a dual-stack bed for IPv6).
fn conn_run_in(bed: &mut Bed, family: Family, secs: u32) -> Result<Http> {
    bed.fresh_source()?;
    http_to(
        bed,
        &bed.http_in(family),
        HttpMode::Close,
        secs.min(SEGMENT_SECS),
    )
}

const SEGMENT_SECS: u32 = 2;

/// New connections/s over `plan.http_secs`, in runs of at most 2 s.
pub fn conn_rate(bed: &mut Bed, plan: &Plan) -> Result<Http> {
    conn_rate_in(bed, Family::V4, plan)
}

/// `conn_rate` over `family`.
pub fn conn_rate_in(bed: &mut Bed, family: Family, plan: &Plan) -> Result<Http> {
    let segments = plan.http_secs.div_ceil(SEGMENT_SECS).max(1);
    let mut parts = Vec::new();
    for _ in 0..segments {
        parts.push(conn_run_in(bed, family, plan.http_secs)?);
    }
    Ok(Http::combine(&parts))
}

/// Requests/s over 50 keep-alive connections for `plan.http_secs`.
pub fn keep_alive(bed: &Bed, plan: &Plan) -> Result<Http> {
    http(bed, HttpMode::KeepAlive, plan)
}

fn tcp(bed: &Bed, what: &str, client: &str, to: &Target, secs: u32) -> Result<Tcp> {
    let result = measure::iperf(client, to, secs)
        .with_context(|| format!("iperf3 {what} on {}", bed.kind))?;
    println!(
        "    {:<11} iperf3 {:<9} {:>6.2} Gbit/s  {:>5.2} CPU s/GB",
        bed.kind.name(),
        what,
        result.gbps,
        result.cpu_s_per_gb
    );
    Ok(result)
}

fn http(bed: &Bed, mode: HttpMode, plan: &Plan) -> Result<Http> {
    http_for(bed, mode, plan.http_secs)
}

fn http_for(bed: &Bed, mode: HttpMode, secs: u32) -> Result<Http> {
    http_to(bed, &bed.http(), mode, secs)
}

fn http_to(bed: &Bed, to: &Target, mode: HttpMode, secs: u32) -> Result<Http> {
    interrupt::check()?;
    let result = measure::wrk(&bed.topo().ext(), to, mode, secs)
        .with_context(|| format!("wrk {mode:?} on {}", bed.kind))?;
    let errors_pct = result.errors as f64 * 100.0 / result.requests.max(1.0);
    if errors_pct > 1.0 {
        eprintln!(
            "warning: {}: wrk {mode:?}: {} errors ({errors_pct:.1} %)",
            bed.kind, result.errors
        );
    }
    println!(
        "    {:<11} wrk {:<9} {:>9.0} /s  p50 {:>7.0} µs  p99 {:>7.0} µs",
        bed.kind.name(),
        format!("{mode:?}"),
        result.rate,
        result.p50_us,
        result.p99_us
    );
    Ok(result)
}
