//! `netd container add|ls|inspect|rm`.

use std::net::Ipv4Addr;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, field, table};
use crate::{
    api::{ContainerSpec, Request},
    network::DEFAULT_NETWORK,
};

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a container's network namespace and attach it to a network.
    Add {
        name: String,
        /// Network to attach to, or a mode: host, none, container:NAME.
        #[arg(long, default_value = DEFAULT_NETWORK)]
        network: String,
        /// Address to use instead of the next free one.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Publish a port: [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp].
        #[arg(short = 'p', long = "publish", value_name = "SPEC")]
        publish: Vec<String>,
        /// Hostname written to the generated hosts file.
        #[arg(long)]
        hostname: Option<String>,
        /// DNS server for the generated resolv.conf (repeatable).
        #[arg(long = "dns", value_name = "IP")]
        dns: Vec<Ipv4Addr>,
        /// Extra hosts entry NAME:IP (repeatable).
        #[arg(long = "add-host", value_name = "NAME:IP")]
        add_host: Vec<String>,
    },
    /// List containers.
    Ls,
    /// Show one container as JSON.
    Inspect { name: String },
    /// Remove a container's namespace, veth and address.
    Rm { name: String },
}

pub fn run(cmd: ContainerCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        ContainerCommand::Add {
            name,
            network,
            ip,
            publish,
            hostname,
            dns,
            add_host,
        } => {
            let spec = ContainerSpec {
                name,
                network,
                ip,
                publish,
                hostname,
                dns,
                add_host,
            };
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
    let rows = value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    ["name", "network", "ip", "mac", "host_veth", "status"]
                        .iter()
                        .map(|k| field(c, k))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["NAME", "NETWORK", "IP", "MAC", "HOST VETH", "STATUS"],
        rows,
    )
}
