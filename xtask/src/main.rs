//! `cargo xtask`: bootstrap, build, run, test and benchmark netd.
//!
//! Every cargo invocation made from here carries the same environment
//! (`RUSTC_BOOTSTRAP=1`, `NETD_BPF_TOOLCHAIN=netd-bpf`) so that build
//! fingerprints stay stable between `build`, `run`, `test` and `bench`.

mod bench;
mod cmd;
mod setup;
mod tasks;

use std::ffi::OsString;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "netd developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces (Debian packages, rustup link, bpf-linker); idempotent.
    Setup,
    /// Set up, then build the `netd` binary (eBPF object included).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build (release), then run `netd daemon ARGS...` in the foreground.
    Run {
        /// Arguments passed to `netd daemon`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// fmt check, clippy, build, then the whole test suite (needs root).
    Test,
    /// Build (release), then benchmark netd against iptables/nftables NAT (needs root; docs/BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::setup(),
        Task::Build { release } => tasks::build(release).map(|_| ()),
        Task::Run { args } => tasks::run_daemon(&args),
        Task::Test => tasks::test(),
        Task::Bench(args) => bench::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> Vec<OsString> {
        match Cli::try_parse_from(argv).map(|cli| cli.task) {
            Ok(Task::Run { args }) => args,
            Ok(_) => panic!("not the run task"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn run_passes_daemon_flags_through() {
        let want: Vec<OsString> = vec!["--socket".into(), "/tmp/s".into()];
        assert_eq!(
            run_args(&["xtask", "run", "--", "--socket", "/tmp/s"]),
            want
        );
        assert_eq!(run_args(&["xtask", "run", "--socket", "/tmp/s"]), want);
        assert!(run_args(&["xtask", "run"]).is_empty());
    }
}
