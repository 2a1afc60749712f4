//! `netd network create|ls|inspect|rm|connect|disconnect`.

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, field, items, table};
use crate::api::{NetworkSpec, Request};

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network: a bridge with a subnet.
    Create(NetworkSpec),
    /// List networks.
    Ls,
    /// Show a network as JSON (the shape of `docker network inspect`).
    Inspect { name: String },
    /// Remove a network (refused while containers are attached).
    Rm { name: String },
    /// Attach a container to another network (eth1, eth2, ...).
    Connect {
        network: String,
        container: String,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
    },
    /// Detach a container from a network.
    Disconnect { network: String, container: String },
}

pub fn run(cmd: NetworkCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        NetworkCommand::Create(spec) => {
            let value = ctx.call(&Request::NetworkCreate(spec))?;
            ctx.print(&value, |v| field(v, "Id"));
        }
        NetworkCommand::Ls => {
            let value = ctx.call(&Request::NetworkLs)?;
            ctx.print(&value, list_table);
        }
        NetworkCommand::Inspect { name } => {
            let value = ctx.call(&Request::NetworkInspect { name })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        NetworkCommand::Rm { name } => {
            ctx.call(&Request::NetworkRm { name: name.clone() })?;
            ctx.print(&Value::String(name.clone()), |_| name);
        }
        NetworkCommand::Connect {
            network,
            container,
            ip,
        } => {
            let value = ctx.call(&Request::NetworkConnect {
                network,
                container,
                ip,
            })?;
            ctx.print(&value, |v| field(v, "name"));
        }
        NetworkCommand::Disconnect { network, container } => {
            let value = ctx.call(&Request::NetworkDisconnect { network, container })?;
            ctx.print(&value, |v| field(v, "name"));
        }
    }
    Ok(())
}

fn list_table(value: &Value) -> String {
    let rows = items(value)
        .iter()
        .map(|n| {
            let id: String = field(n, "Id").chars().take(12).collect();
            vec![
                id,
                field(n, "Name"),
                field(n, "Driver"),
                field(n, "Scope"),
                field(n, "Subnet"),
            ]
        })
        .collect();
    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"], rows)
}
