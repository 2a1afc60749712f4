//! `netd network create|ls|inspect|rm|connect|disconnect`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use serde_json::Value;

use super::{Ctx, field, items, table};
use crate::{
    api::Request,
    engine::{
        model::GatewayMode,
        requests::{ContainerRef, EndpointRef, EndpointRequest, NetworkCreate},
    },
};

/// What `network create` asks for, as typed on the command line.
#[derive(Debug, Clone, Args)]
pub struct NetworkSpec {
    /// Network name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 characters.
    pub name: String,
    /// Subnet, IPv4 or (with --ipv6) IPv6; repeatable, at most one of
    /// each family (default IPv4: the next free subnet of the daemon's
    /// default address pools, without --default-address-pool the next
    /// free /16 from 172.18.0.0; default IPv6: the next free /64 of
    /// fd00:6e65:7464::/48).
    #[arg(long)]
    pub subnet: Vec<IpNetwork>,
    /// Gateway address, one per family (default: the subnet's first
    /// address).
    #[arg(long)]
    pub gateway: Vec<IpAddr>,
    /// Dual stack: an IPv6 subnet besides the IPv4 one.
    #[arg(long)]
    pub ipv6: bool,
    /// No MASQUERADE and no default route: containers reach only each other.
    #[arg(long)]
    pub internal: bool,
    /// Bridge device name (default br-<id prefix>).
    #[arg(long)]
    pub bridge: Option<String>,
    /// nat: MASQUERADE, and from outside only published ports get in;
    /// routed: no NAT, hosts that route the subnet here reach the
    /// containers directly (Docker's gateway_mode_ipv4).
    #[arg(long, value_enum, default_value_t = Mode::Nat)]
    pub gateway_mode: Mode,
    /// Use the existing bridge named by --bridge. netd adds the gateway
    /// address to it and never deletes it.
    #[arg(long, requires = "bridge")]
    pub adopt_bridge: bool,
}

/// `--gateway-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Nat,
    Routed,
}

impl NetworkSpec {
    fn request(self) -> Result<NetworkCreate> {
        let (subnet, subnet6) = one_per_family("--subnet", &self.subnet, IpNetwork::is_ipv4)?;
        let (gateway, gateway6) = one_per_family("--gateway", &self.gateway, IpAddr::is_ipv4)?;
        if (subnet6.is_some() || gateway6.is_some()) && !self.ipv6 {
            bail!("an IPv6 --subnet or --gateway needs --ipv6");
        }
        Ok(NetworkCreate {
            name: self.name,
            id: None,
            subnet,
            gateway,
            ipv6: self.ipv6,
            subnet6,
            gateway6,
            internal: self.internal,
            bridge: self.bridge,
            gateway_mode: match self.gateway_mode {
                Mode::Nat => GatewayMode::Nat,
                Mode::Routed => GatewayMode::Routed,
            },
            adopt_bridge: self.adopt_bridge,
        })
    }
}

/// Splits a repeatable option into its IPv4 and IPv6 values, refusing a
/// second value of one family (a network has one subnet per family).
fn one_per_family<T: Copy + std::fmt::Display>(
    flag: &str,
    values: &[T],
    is_v4: fn(&T) -> bool,
) -> Result<(Option<T>, Option<T>)> {
    let (mut v4, mut v6) = (None, None);
    for value in values {
        let slot = if is_v4(value) { &mut v4 } else { &mut v6 };
        if let Some(first) = slot.replace(*value) {
            bail!("{flag} {first} and {value}: a network has at most one IPv4 and one IPv6 {flag}");
        }
    }
    Ok((v4, v6))
}

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
        /// IPv6 address on a dual-stack network.
        #[arg(long)]
        ip6: Option<Ipv6Addr>,
    },
    /// Detach a container from a network.
    Disconnect { network: String, container: String },
}

pub fn run(cmd: NetworkCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        NetworkCommand::Create(spec) => {
            let value = ctx.call(&Request::NetworkCreate(spec.request()?))?;
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
            ip6,
        } => {
            let endpoint = EndpointRequest {
                network,
                id: None,
                ifname: None,
                ip: ip.map(IpAddr::V4),
                ip6: ip6.map(IpAddr::V6),
                peer_on_host: false,
            };
            let value = ctx.call(&Request::NetworkConnect {
                container: ContainerRef::Name(container),
                endpoint,
            })?;
            ctx.print(&value, |v| field(v, "name"));
        }
        NetworkCommand::Disconnect { network, container } => {
            let value = ctx.call(&Request::NetworkDisconnect {
                container: ContainerRef::Name(container),
                endpoint: EndpointRef::Network(network),
            })?;
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
                match n.get("Subnet6").and_then(Value::as_str) {
                    Some(v6) => format!("{},{v6}", field(n, "Subnet")),
                    None => field(n, "Subnet"),
                },
            ]
        })
        .collect();
    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"], rows)
}
