//! `netd conntrack ls`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, field, items, table};
use crate::api::Request;

#[derive(Subcommand, Debug)]
pub enum ConntrackCommand {
    /// List tracked flows (translated by netd).
    Ls {
        /// Only flows of this container (one of its addresses in the
        /// original or translated tuple).
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
        /// Only flows with this port on either side of either tuple.
        #[arg(long, value_name = "N")]
        port: Option<u16>,
    },
}

pub fn run(cmd: ConntrackCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        ConntrackCommand::Ls { container, port } => {
            // The daemon streams the flows; the table needs them all for
            // its column widths, so they are gathered here.
            let mut flows = Vec::new();
            let request = Request::ConntrackLs { container, port };
            crate::api::client::call_stream(&ctx.socket, &request, |flow| {
                flows.push(flow);
                Ok(())
            })?;
            ctx.print(&Value::Array(flows), list_table);
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
