//! Where netd's CPU goes in the connection-rate test: BPF run-time stats
//! (run count and time per program) over one wrk run, next to the machine's
//! total CPU per connection.

use std::path::Path;

use anyhow::{Context, Result};

use super::{
    Plan, bpf,
    datapath::{Bed, Kind},
    measure::Servers,
    results::{Profile, ProgCost},
    suite,
};

pub fn run(netd_bin: &Path, plan: &Plan) -> Result<Profile> {
    let mut bed = Bed::up(Kind::Netd, netd_bin)?;
    let _servers = Servers::start(&bed)?;
    let bpffs = bed
        .daemon()
        .context("netd bed without daemon")?
        .bpffs()
        .to_path_buf();
    let _stats = bpf::enable_stats()?;
    let before = bpf::link_progs(&bpffs)?;
    let http = suite::conn_rate(&mut bed, plan)?;
    let after = bpf::link_progs(&bpffs)?;
    let progs = after
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
                runs_per_conn: runs as f64 / http.requests,
            })
        })
        .collect();
    Ok(Profile {
        conn_per_s: http.rate,
        cpu_us_per_conn: http.cpu_us_per_req,
        progs,
    })
}
