//! `netd container add|ls|inspect|rm`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, columns, field, table};
use crate::api::{ContainerSpec, Request};

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a container's network namespace and attach it to a network.
    Add(ContainerSpec),
    /// List containers.
    Ls,
    /// Show one container as JSON.
    Inspect { name: String },
    /// Remove a container's namespace, veth and address.
    Rm { name: String },
}

pub fn run(cmd: ContainerCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        ContainerCommand::Add(spec) => {
            let value = ctx.call(&Request::ContainerAdd(spec))?;
            ctx.print(&value, |v| field(v, "name"));
        }
        ContainerCommand::Ls => {
            let value = ctx.call(&Request::ContainerLs)?;
            ctx.print(&value, list_table);
        }
        ContainerCommand::Inspect { name } => {
            let value = ctx.call(&Request::ContainerInspect { name })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        ContainerCommand::Rm { name } => {
            ctx.call(&Request::ContainerRm { name: name.clone() })?;
            ctx.print(&Value::String(name.clone()), |_| name);
        }
    }
    Ok(())
}

fn list_table(value: &Value) -> String {
    let rows = columns(
        value,
        &["name", "network", "ip", "mac", "host_veth", "status"],
    );
    table(
        &["NAME", "NETWORK", "IP", "MAC", "HOST VETH", "STATUS"],
        rows,
    )
}
