//! The run's description (machine, tools, command) and `--update-docs`:
//! the results block of docs/BENCHMARKS.md and docs/bench/conn-rate.svg.

use std::{env, fs, path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use super::{Plan, loadavg, procs, report::Meta};
use crate::cmd;

const BEGIN: &str = "<!-- bench:results:begin -->";
const END: &str = "<!-- bench:results:end -->";

pub fn meta(plan: &Plan, bin: &Path, load_start: &str, elapsed: Duration) -> Meta {
    let args: Vec<String> = env::args().skip(1).collect();
    Meta {
        command: format!("cargo xtask {}", args.join(" ")),
        machine: machine(),
        tools: tools(),
        binary: binary(bin),
        baseline: plan.baseline_bin.as_deref().map(binary),
        date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        plan: plan.describe(),
        load: format!("{load_start} → {}", loadavg()),
        elapsed_s: elapsed.as_secs_f64(),
    }
}

/// Path and the start of its SHA-256, to tell snapshots apart.
fn binary(bin: &Path) -> String {
    let sum = first_line("sha256sum", &[&bin.to_string_lossy()]);
    let short: String = sum.chars().take(12).collect();
    format!("{} (sha256 {short}…)", bin.display())
}

fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let debian = fs::read_to_string("/etc/debian_version").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.1} GiB RAM; kernel {}; Debian {}",
        mem_kib / 1024.0 / 1024.0,
        kernel.trim(),
        debian.trim()
    )
}

fn tools() -> String {
    [
        ("wrk", &["-v"][..]),
        ("nginx", &["-v"]),
        ("iperf3", &["--version"]),
        ("iptables", &["-V"]),
        ("nft", &["--version"]),
    ]
    .iter()
    .map(|(tool, args)| first_line(tool, args))
    .collect::<Vec<_>>()
    .join("; ")
}

/// First line of a command's stdout, or of its stderr (nginx -v).
fn first_line(program: &str, args: &[&str]) -> String {
    let mut c = procs::command(program);
    c.args(args);
    let Ok(out) = procs::output_within(&mut c, Duration::from_secs(5)) else {
        return format!("{program}: ?");
    };
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Replaces the results block of docs/BENCHMARKS.md and copies the plot.
pub fn update(body: &str, svg: Option<&Path>) -> Result<()> {
    let root = cmd::workspace_root();
    if let Some(svg) = svg {
        let dir = root.join("docs/bench");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dest = dir.join("conn-rate.svg");
        fs::copy(svg, &dest)
            .with_context(|| format!("cannot copy the plot to {}", dest.display()))?;
    }
    let path = root.join("docs/BENCHMARKS.md");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let new = replace_block(&text, body)?;
    fs::write(&path, new).with_context(|| format!("cannot write {}", path.display()))?;
    println!("updated {} and docs/bench/conn-rate.svg", path.display());
    Ok(())
}

fn replace_block(text: &str, body: &str) -> Result<String> {
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("docs/BENCHMARKS.md has no {BEGIN} ... {END} block");
    };
    if e < b {
        bail!("docs/BENCHMARKS.md: {END} comes before {BEGIN}");
    }
    Ok(format!("{}{BEGIN}\n{body}{}", &text[..b], &text[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_results_block() -> Result<()> {
        let text = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let new = replace_block(&text, "new\n")?;
        assert_eq!(new, format!("intro\n{BEGIN}\nnew\n{END}\noutro\n"));
        assert!(replace_block("no markers", "x").is_err());
        Ok(())
    }
}
