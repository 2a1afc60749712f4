//! Where netd's CPU goes: BPF run-time stats (run count and time per
//! program) over a connection-rate run, a keep-alive run and an outbound
//! bulk transfer, next to the machine's total CPU per request. With `--baseline-bin`, the baseline
//! binary is profiled the same way in every repeat, the order alternating,
//! so its programs' ns/run can be set against netd's: a per-program A/B
//! that other load on the machine disturbs far less than the rates do.

use std::path::Path;

use anyhow::{Context, Result};

use super::{
    Plan, bpf,
    datapath::{Bed, Family, Kind},
    interrupt,
    measure::{self, Http, Servers},
    results::{ProfTest, Profile, ProfileRun, ProgCost},
    suite,
};

/// `dual`: a dual-stack testbed and the per-family connection tests
/// (`ProfTest::FAMILIES`) instead of `ProfTest::ALL`.
pub fn run(netd_bin: &Path, plan: &Plan, dual: bool) -> Result<Profile> {
    let mut kinds = vec![Kind::Netd];
    if plan.baseline_bin.is_some() {
        kinds.push(Kind::NetdBaseline);
    }
    let mut runs = Vec::new();
    for r in 0..plan.repeats {
        for i in 0..kinds.len() {
            interrupt::check()?;
            let kind = kinds[(i + r as usize) % kinds.len()];
            println!("==> profile {}/{}: {kind}", r + 1, plan.repeats);
            profile_bed(
                kind,
                plan.bin_for(kind, netd_bin)?,
                plan,
                r,
                dual,
                &mut runs,
            )?;
        }
    }
    Ok(Profile { runs })
}

/// One fresh testbed of `kind`: a connection-rate run, then a keep-alive
/// run, each with its own counter deltas.
fn profile_bed(
    kind: Kind,
    bin: &Path,
    plan: &Plan,
    repeat: u32,
    dual: bool,
    out: &mut Vec<ProfileRun>,
) -> Result<()> {
    let mut bed = if dual {
        Bed::up_dual(kind, bin)?
    } else {
        Bed::up(kind, bin)?
    };
    let _servers = Servers::start(&bed)?;
    let bpffs = bed
        .daemon()
        .context("netd bed without daemon")?
        .bpffs()
        .to_path_buf();
    let _stats = bpf::enable_stats()?;
    let tests: &[ProfTest] = if dual {
        &ProfTest::FAMILIES
    } else {
        &ProfTest::ALL
    };
    for &test in tests {
        let before = bpf::link_progs(&bpffs)?;
        let http = match test {
            ProfTest::Conn => suite::conn_rate(&mut bed, plan)?,
            ProfTest::KeepAlive => suite::keep_alive(&bed, plan)?,
            ProfTest::Outbound | ProfTest::OutboundV4 => outbound(&bed, Family::V4, plan)?,
            ProfTest::OutboundV6 => outbound(&bed, Family::V6, plan)?,
            ProfTest::ConnV4 => suite::conn_rate_in(&mut bed, Family::V4, plan)?,
            ProfTest::ConnV6 => suite::conn_rate_in(&mut bed, Family::V6, plan)?,
        };
        let after = bpf::link_progs(&bpffs)?;
        let run = ProfileRun {
            kind,
            repeat,
            test,
            rate: http.rate,
            cpu_us_per_req: http.cpu_us_per_req,
            progs: deltas(&before, &after, &http),
        };
        for p in &run.progs {
            println!(
                "    {:<11} {:<10} {:<22} {:>6.2} runs/req {:>6.0} ns/run",
                kind.name(),
                test.name(),
                p.name,
                p.runs_per_req,
                p.ns_per_run
            );
        }
        out.push(run);
    }
    Ok(())
}

/// One outbound iperf3 run as a "request" per MB moved: rate in Gbit/s,
/// CPU in µs per MB.
fn outbound(bed: &Bed, family: Family, plan: &Plan) -> Result<Http> {
    let to = Bed::ext_server_in(family);
    let tcp = measure::iperf(&bed.outbound_client_ns(), &to, plan.iperf_secs)?;
    Ok(Http {
        rate: tcp.gbps,
        requests: tcp.gbps * f64::from(plan.iperf_secs) * 1000.0 / 8.0,
        cpu_us_per_req: tcp.cpu_s_per_gb * 1000.0,
        ..Http::default()
    })
}

fn deltas(before: &[bpf::ProgRun], after: &[bpf::ProgRun], http: &Http) -> Vec<ProgCost> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.id == a.id)?;
            let runs = a.run_cnt.saturating_sub(b.run_cnt);
            let ns = a.run_time_ns.saturating_sub(b.run_time_ns);
            (runs > 0).then(|| ProgCost {
                links: a.links.join(", "),
                name: a.name.clone(),
                runs,
                ns_per_run: ns as f64 / runs as f64,
                runs_per_req: runs as f64 / http.requests.max(1.0),
            })
        })
        .collect()
}
