//! `netd conntrack ls`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, field, items, table};
use crate::api::Request;

#[derive(Subcommand, Debug)]
pub enum ConntrackCommand {
    /// List tracked flows (translated by netd).
    Ls,
}

pub fn run(cmd: ConntrackCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        ConntrackCommand::Ls => {
            let value = ctx.call(&Request::ConntrackLs)?;
            ctx.print(&value, list_table);
        }
    }
    Ok(())
}

fn list_table(value: &Value) -> String {
    let rows = items(value)
        .iter()
        .map(|f| {
            vec![
                field(f, "proto"),
                field(f, "kind"),
                field(f, "state"),
                format!(
                    "{} -> {}",
                    field(&f["original"], "src"),
                    field(&f["original"], "dst")
                ),
                format!(
                    "{} -> {}",
                    field(&f["translated"], "src"),
                    field(&f["translated"], "dst")
                ),
                field(f, "packets"),
                field(f, "reply_packets"),
                field(f, "expires_in_secs"),
            ]
        })
        .collect();
    table(
        &[
            "PROTO",
            "KIND",
            "STATE",
            "ORIGINAL",
            "TRANSLATED",
            "PKTS",
            "REPLY PKTS",
            "EXPIRES IN",
        ],
        rows,
    )
}
