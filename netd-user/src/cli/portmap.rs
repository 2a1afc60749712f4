//! `netd portmap add|ls|rm`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, columns, field, items, table};
use crate::api::{Request, portspec};

#[derive(Subcommand, Debug)]
pub enum PortmapCommand {
    /// Publish: [HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:CPORT[-END][/tcp|/udp].
    Add {
        spec: String,
        /// Publish even over a port a host process listens on (the
        /// process loses it to the container).
        #[arg(long)]
        force: bool,
    },
    /// List published ports.
    Ls,
    /// Unpublish: the same SPEC as `add`, or just its host side.
    Rm { spec: String },
}

pub fn run(cmd: PortmapCommand, ctx: &Ctx) -> Result<()> {
    let (value, listing) = match cmd {
        PortmapCommand::Add { spec, force } => {
            let mappings = vec![portspec::parse_mapping(&spec)?];
            (ctx.call(&Request::PortmapAdd { mappings, force })?, false)
        }
        PortmapCommand::Ls => (ctx.call(&Request::PortmapLs)?, true),
        PortmapCommand::Rm { spec } => {
            let selector = portspec::parse_selector(&spec)?;
            (ctx.call(&Request::PortmapRm { selector })?, false)
        }
    };
    ctx.print(&value, |v| if listing { list_table(v) } else { specs(v) });
    Ok(())
}

fn specs(value: &Value) -> String {
    items(value)
        .iter()
        .map(|m| field(m, "spec"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_table(value: &Value) -> String {
    // Every host address bound, both families' on a dual-stack container.
    let host_ips: Vec<String> = items(value)
        .iter()
        .map(|m| {
            let ips = m["host_ips"].as_array().cloned().unwrap_or_default();
            let ips: Vec<String> = ips
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if ips.is_empty() {
                field(m, "host_ip")
            } else {
                ips.join(",")
            }
        })
        .collect();
    let mut rows = columns(
        value,
        &[
            "host_ip",
            "host_port",
            "container_ip",
            "container_port",
            "proto",
            "container",
        ],
    );
    for (row, ips) in rows.iter_mut().zip(host_ips) {
        row[0] = ips;
    }
    table(
        &[
            "HOST IP",
            "HOST PORT",
            "CONTAINER IP",
            "CONTAINER PORT",
            "PROTO",
            "CONTAINER",
        ],
        rows,
    )
}
