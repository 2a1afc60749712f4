//! Command-line interface: one file per verb group.

mod cni;
mod conntrack;
mod container;
mod daemon;
mod docker;
mod exec;
mod network;
mod portmap;
mod system;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api::{Request, client};

#[derive(Parser, Debug)]
#[command(
    name = "netd",
    version,
    about = "eBPF container networking: Docker's bridge model without iptables"
)]
pub struct Cli {
    /// The daemon's socket.
    #[arg(
        long,
        global = true,
        env = "NETD_SOCKET",
        default_value = "/run/netd/netd.sock"
    )]
    pub socket: PathBuf,
    /// Output format of listing and inspect commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground.
    Daemon(daemon::DaemonArgs),
    /// Check that the daemon answers.
    Status,
    /// Manage containers' network endpoints.
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Manage networks (bridges with a subnet).
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Publish container ports on the host (DNAT in eBPF).
    #[command(subcommand)]
    Portmap(portmap::PortmapCommand),
    /// Inspect connection tracking.
    #[command(subcommand)]
    Conntrack(conntrack::ConntrackCommand),
    /// The CNI plugin: `netd cni install [--dir /opt/cni/bin]`.
    #[command(subcommand)]
    Cni(cni::CniCommand),
    /// Docker on netd: what Docker's CLI cannot show of a plugin.
    #[command(subcommand)]
    Docker(docker::DockerCommand),
    /// Run a command inside a container's network namespace.
    Exec(exec::ExecArgs),
    /// Show the datapath's packet counters.
    Stats,
    /// Remove everything netd created and stop the daemon (works without a
    /// running daemon too, from the state dir).
    Down(system::DownArgs),
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx {
        socket: cli.socket,
        output: cli.output,
    };
    match cli.command {
        Command::Daemon(args) => daemon::run(args, &ctx.socket).map(|()| 0),
        Command::Status => system::status(&ctx).map(|()| 0),
        Command::Container(cmd) => container::run(cmd, &ctx).map(|()| 0),
        Command::Network(cmd) => network::run(cmd, &ctx).map(|()| 0),
        Command::Portmap(cmd) => portmap::run(cmd, &ctx).map(|()| 0),
        Command::Conntrack(cmd) => conntrack::run(cmd, &ctx).map(|()| 0),
        Command::Cni(cmd) => cni::run(cmd).map(|()| 0),
        Command::Docker(cmd) => docker::run(cmd, &ctx).map(|()| 0),
        Command::Exec(args) => exec::run(args, &ctx),
        Command::Stats => system::stats(&ctx).map(|()| 0),
        Command::Down(args) => system::down(args, &ctx).map(|()| 0),
    }
}

/// What every client-side verb needs.
pub struct Ctx {
    pub socket: PathBuf,
    pub output: Output,
}

impl Ctx {
    pub fn call(&self, request: &Request) -> Result<Value> {
        client::call(&self.socket, request)
    }

    /// Prints `value` as JSON, or with `text` when the output is text.
    pub fn print(&self, value: &Value, text: impl FnOnce(&Value) -> String) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => println!("{}", text(value)),
        }
    }
}

/// Renders rows as left-aligned columns.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// The items of a JSON array (none for anything else).
pub fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// One row per item of a JSON array, one cell per key.
pub fn columns(value: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    items(value)
        .iter()
        .map(|item| keys.iter().map(|k| field(item, k)).collect())
        .collect()
}

/// A JSON field as display text ("" when absent).
pub fn field(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
