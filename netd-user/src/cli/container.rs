//! `netd container add|ls|inspect|rm`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Ctx, columns, field, items, table};
use crate::{
    api::{Request, portspec},
    engine::{
        model::DEFAULT_NETWORK,
        requests::{ContainerAdd, ContainerRef, EndpointRequest, SandboxRequest},
    },
};

/// What `container add` asks for, as typed on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerSpec {
    /// Container name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 characters.
    pub name: String,
    /// Network to attach to, or a mode: host, none, container:NAME.
    #[arg(long, default_value = DEFAULT_NETWORK)]
    pub network: String,
    /// Address to use instead of the next free one.
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// IPv6 address (dual-stack networks) instead of the next free one.
    #[arg(long)]
    pub ip6: Option<Ipv6Addr>,
    /// Publish a port: [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish even over host ports a host process listens on (it loses
    /// them to the container).
    #[arg(long)]
    pub force_publish: bool,
    /// Hostname written to the generated hosts file.
    #[arg(long)]
    pub hostname: Option<String>,
    /// DNS server for the generated resolv.conf (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<Ipv4Addr>,
    /// Extra hosts entry NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
}

impl ContainerSpec {
    /// The engine's request: the mode string, `-p` and `--add-host`
    /// parsed here, at the front door.
    fn request(self) -> Result<ContainerAdd> {
        let (sandbox, endpoint) = match self.network.as_str() {
            "host" => (SandboxRequest::Host, None),
            "none" => (SandboxRequest::Isolated, None),
            other => match other.strip_prefix("container:") {
                Some(target) => (
                    SandboxRequest::Shared {
                        container: target.into(),
                    },
                    None,
                ),
                None => (
                    SandboxRequest::Create,
                    Some(EndpointRequest {
                        network: other.into(),
                        id: None,
                        ifname: Some("eth0".into()),
                        ip: self.ip.map(IpAddr::V4),
                        ip6: self.ip6.map(IpAddr::V6),
                        peer_on_host: false,
                    }),
                ),
            },
        };
        if (self.ip.is_some() || self.ip6.is_some()) && endpoint.is_none() {
            anyhow::bail!(
                "--ip needs a network: containers in mode {} get no address of their own",
                self.network
            );
        }
        Ok(ContainerAdd {
            name: self.name,
            id: None,
            sandbox,
            endpoint,
            publish: self
                .publish
                .iter()
                .map(|p| portspec::parse_publish(p))
                .collect::<Result<_>>()?,
            force_publish: self.force_publish,
            hostname: self.hostname,
            dns: self.dns.into_iter().map(IpAddr::V4).collect(),
            extra_hosts: self
                .add_host
                .iter()
                .map(|h| parse_extra_host(h))
                .collect::<Result<_>>()?,
        })
    }
}

/// `--add-host NAME:IP` (the engine checks NAME).
fn parse_extra_host(spec: &str) -> Result<(String, IpAddr)> {
    let (name, ip) = spec
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("bad --add-host {spec:?}: use NAME:IP"))?;
    let ip = ip
        .parse::<Ipv4Addr>()
        .map_err(|_| anyhow!("bad --add-host {spec:?}: {ip:?} is not an IPv4 address"))?;
    Ok((name.into(), IpAddr::V4(ip)))
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create a container's network namespace and attach it to a network.
    Add(ContainerSpec),
    /// List containers.
    Ls,
    /// Show one container as JSON (by name, or by id: a runtime's
    /// container id, or its first 12 or more characters).
    Inspect { name: String },
    /// Remove a container's namespace, veth and address (by name or id).
    Rm { name: String },
}

pub fn run(cmd: ContainerCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        ContainerCommand::Add(spec) => {
            let value = ctx.call(&Request::ContainerAdd(spec.request()?))?;
            ctx.print(&value, |v| field(v, "name"));
        }
        ContainerCommand::Ls => {
            let value = ctx.call(&Request::ContainerLs)?;
            ctx.print(&value, list_table);
        }
        ContainerCommand::Inspect { name } => {
            let value = ctx.call(&Request::ContainerInspect {
                container: resolve(ctx, &name)?,
            })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        ContainerCommand::Rm { name } => {
            ctx.call(&Request::ContainerRm {
                container: resolve(ctx, &name)?,
            })?;
            ctx.print(&Value::String(name.clone()), |_| name);
        }
    }
    Ok(())
}

fn list_table(value: &Value) -> String {
    let rows = columns(
        value,
        &["id", "name", "network", "ip", "mac", "host_veth", "status"],
    )
    .into_iter()
    .zip(items(value))
    .map(|(mut row, item)| {
        // Docker's short id; the interface that carries the address (a
        // CNI runtime's CNI_IFNAME).
        row[0] = row[0].chars().take(12).collect();
        let ifname = field(&item["interfaces"][0], "name");
        row.insert(3, ifname);
        row
    })
    .collect();
    table(
        &[
            "CONTAINER ID",
            "NAME",
            "NETWORK",
            "IFNAME",
            "IP",
            "MAC",
            "HOST VETH",
            "STATUS",
        ],
        rows,
    )
}

/// A container by name, else by id or a prefix of at least 12 characters
/// of one id (what `ls` shows); unknown ones go to the daemon by name, for
/// its error.
fn resolve(ctx: &Ctx, name_or_id: &str) -> Result<ContainerRef> {
    let list = ctx.call(&Request::ContainerLs)?;
    let all = items(&list);
    if all.iter().any(|c| field(c, "name") == name_or_id) {
        return Ok(ContainerRef::Name(name_or_id.into()));
    }
    let ids: Vec<String> = all
        .iter()
        .map(|c| field(c, "id"))
        .filter(|id| id == name_or_id || (name_or_id.len() >= 12 && id.starts_with(name_or_id)))
        .collect();
    Ok(match ids.as_slice() {
        [id] => ContainerRef::Id(id.clone()),
        _ => ContainerRef::Name(name_or_id.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_parse() {
        assert_eq!(
            parse_extra_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".parse().unwrap())
        );
        assert!(parse_extra_host("db").is_err());
        assert!(parse_extra_host("db:x").is_err());
    }

    #[test]
    fn modes_become_sandboxes() {
        let spec = |network: &str| ContainerSpec {
            name: "c".into(),
            network: network.into(),
            ..ContainerSpec::default()
        };
        assert_eq!(
            spec("host").request().unwrap().sandbox,
            SandboxRequest::Host
        );
        assert_eq!(
            spec("none").request().unwrap().sandbox,
            SandboxRequest::Isolated
        );
        assert_eq!(
            spec("container:web").request().unwrap().sandbox,
            SandboxRequest::Shared {
                container: "web".into()
            }
        );
        let bridged = spec("mynet").request().unwrap();
        assert_eq!(bridged.sandbox, SandboxRequest::Create);
        assert_eq!(bridged.endpoint.unwrap().network, "mynet");
    }
}
