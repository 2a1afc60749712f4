//! `cargo xtask bench`: control-plane latency of `netd container add/rm`,
//! each timed as a whole CLI process against a daemon in a fresh testbed.

mod testbed;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{cmd, tasks};
use testbed::Testbed;

/// Latency target per operation, checked against p99.
const TARGET_MS: f64 = 30.0;

#[derive(Args)]
pub struct BenchArgs {
    /// Containers to add (and then remove).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    iterations: u16,
    /// Exit non-zero when an operation misses the target.
    #[arg(long)]
    enforce: bool,
    /// Benchmark this netd binary instead of building one (release).
    #[arg(long, value_name = "PATH")]
    netd_bin: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    cmd::ensure_root("the benchmark creates network namespaces and loads eBPF")?;
    let bin = match &args.netd_bin {
        Some(bin) => bin.clone(),
        None => tasks::build(true)?,
    };
    let n = usize::from(args.iterations);
    println!("==> control-plane benchmark: {n} x container add, {n} x container rm");
    let bed = Testbed::start(&bin)?;
    let add = time_all(&bed, n, "add")?;
    let rm = time_all(&bed, n, "rm")?;
    let rows = [("container add", &add), ("container rm", &rm)];
    let report = report(&bin, n, &rows);
    print!("{report}");
    let path = write_report(&report)?;
    println!("written to {}", path.display());
    drop(bed);
    let missed = [&add, &rm].iter().any(|s| s.p99 > TARGET_MS);
    if args.enforce && missed {
        bail!("control-plane latency above the {TARGET_MS} ms target");
    }
    Ok(())
}

/// Runs `netd container OP <name>` for `n` containers; one sample each.
fn time_all(bed: &Testbed, n: usize, op: &str) -> Result<Summary> {
    let mut samples = Vec::with_capacity(n);
    for i in 1..=n {
        samples.push(time_one(bed, op, &bed.container(i))?);
    }
    Summary::of(samples)
}

fn time_one(bed: &Testbed, op: &str, name: &str) -> Result<f64> {
    let mut netd = bed.netd();
    netd.args(["container", op, name]);
    let start = Instant::now();
    let out = cmd::capture(&mut netd)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}\ndaemon log:\n{}",
            cmd::describe(&netd),
            String::from_utf8_lossy(&out.stderr).trim(),
            bed.log()
        );
    }
    Ok(ms)
}

struct Summary {
    min: f64,
    median: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(mut samples: Vec<f64>) -> Result<Self> {
        if samples.is_empty() {
            bail!("no samples");
        }
        samples.sort_by(f64::total_cmp);
        Ok(Summary {
            min: samples[0],
            median: nearest_rank(&samples, 50),
            p99: nearest_rank(&samples, 99),
            max: samples[samples.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `samples`.
fn nearest_rank(samples: &[f64], pct: usize) -> f64 {
    let rank = (pct * samples.len()).div_ceil(100).max(1);
    samples[rank.min(samples.len()) - 1]
}

fn report(bin: &Path, n: usize, rows: &[(&str, &Summary)]) -> String {
    let mut md = String::from("# netd control-plane benchmark\n\n");
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(
        md,
        "Kernel {}, {n} operations each, each a whole `netd` CLI process.",
        kernel.trim()
    );
    let _ = writeln!(md, "Binary: `{}`.", bin.display());
    let _ = writeln!(md, "Target: p99 <= {TARGET_MS} ms.\n");
    md.push_str("| operation | min ms | median ms | p99 ms | max ms | target |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: | --- |\n");
    for (name, s) in rows {
        let verdict = if s.p99 <= TARGET_MS { "met" } else { "MISSED" };
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {verdict} |",
            s.min, s.median, s.p99, s.max
        );
    }
    md
}

fn write_report(report: &str) -> Result<PathBuf> {
    let dir = cmd::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("control-plane.md");
    fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
