//! `netd status`, `netd stats`, `netd down`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use super::{Ctx, table};
use crate::{
    api::{Request, client::DaemonNotRunning},
    engine::store::redb::DbFile,
    kernel::datapath,
};

pub fn status(ctx: &Ctx) -> Result<()> {
    let value = ctx.call(&Request::Status)?;
    ctx.print(&value, |v| {
        format!(
            "netd {} running: {} containers, state in {}, maps in {}\n{}",
            super::field(v, "version"),
            super::field(v, "containers"),
            super::field(v, "state_dir"),
            super::field(v, "bpffs"),
            conntrack_line(&v["conntrack"]),
        )
    });
    Ok(())
}

/// "conntrack: 1200/524288 entries (0.2%), IPv6 10/131072 entries (0.0%),
/// drop_ct_full 0, drop_no_port 0" (entries of both tables, new and
/// assured flows, per family).
fn conntrack_line(ct: &Value) -> String {
    format!(
        "conntrack: {}, IPv6 {}, drop_ct_full {}, drop_no_port {}",
        fill(ct),
        fill(&ct["ipv6"]),
        super::field(ct, "drop_ct_full"),
        super::field(ct, "drop_no_port"),
    )
}

/// "1200/524288 entries (0.2%)".
fn fill(ct: &Value) -> String {
    let max = ct["max_entries"].as_u64().unwrap_or(0);
    match ct["entries"].as_u64() {
        Some(n) if max > 0 => format!("{n}/{max} entries ({:.1}%)", n as f64 * 100.0 / max as f64),
        _ => format!("?/{max} entries (not counted yet)"),
    }
}

pub fn stats(ctx: &Ctx) -> Result<()> {
    let value = ctx.call(&Request::Stats)?;
    ctx.print(&value, |v| {
        let rows = v
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, c)| {
                        vec![
                            name.clone(),
                            c["packets"].to_string(),
                            c["bytes"].to_string(),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(&["COUNTER", "PACKETS", "BYTES"], rows)
    });
    Ok(())
}

/// Where an offline `netd down` finds what to remove (the daemon's paths).
#[derive(Args, Debug)]
pub struct DownArgs {
    /// The daemon's state dir (used only when no daemon answers).
    #[arg(long, default_value = "/var/lib/netd")]
    pub state_dir: PathBuf,
    /// The daemon's bpffs dir (used only when no daemon answers).
    #[arg(long, default_value = "/sys/fs/bpf/netd")]
    pub bpffs: PathBuf,
    /// The daemon's netns dir (used only when no daemon answers and the
    /// state database is unreadable).
    #[arg(long, default_value = "/run/netns")]
    pub netns_dir: PathBuf,
}

/// Through the daemon when one answers; otherwise straight from the state
/// database, so a crashed daemon never blocks the cleanup.
pub fn down(args: DownArgs, ctx: &Ctx) -> Result<()> {
    match ctx.call(&Request::Down) {
        Ok(_) => {}
        Err(e) if e.is::<DaemonNotRunning>() => {
            if DbFile::of(&args.state_dir) == DbFile::Missing && !datapath::has_pins(&args.bpffs) {
                bail!(
                    "no daemon answers on {} and {} holds no netd state: nothing to remove (pass --state-dir/--bpffs if the daemon used others)",
                    ctx.socket.display(),
                    args.state_dir.display()
                );
            }
            eprintln!(
                "no daemon answers; removing what {} records",
                args.state_dir.display()
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(crate::server::down_offline(
                &args.state_dir,
                &args.bpffs,
                &args.netns_dir,
            ))?;
        }
        Err(e) => return Err(e),
    }
    ctx.print(&Value::Bool(true), |_| {
        "netd is down: containers, bridges, pinned maps and state removed".into()
    });
    Ok(())
}
