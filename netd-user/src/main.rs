//! `netd`: the daemon and its CLI in one binary.

mod api;
mod cli;
mod client;
mod container;
mod daemon;
mod datapath;
mod ipam;
mod netlink;
mod netns;
mod network;
mod state;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the whole context chain, newlines folded.
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            1
        }
    };
    std::process::exit(code);
}
