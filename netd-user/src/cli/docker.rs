//! `netd docker ports CONTAINER`: what `docker port` would say for a
//! container on netd's plugin (Docker cannot show a plugin's ports,
//! libnetwork#2451). CONTAINER is a Docker container (name or id, looked
//! up with the `docker` CLI, which honours DOCKER_HOST), a Docker endpoint
//! id, or netd's name for the endpoint (`docker-<id12>`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, items};
use crate::{api::Request, engine::requests::ContainerRef};

#[derive(Subcommand, Debug)]
pub enum DockerCommand {
    /// Published ports of a Docker container, as `docker port` prints them.
    Ports { container: String },
}

pub fn run(cmd: DockerCommand, ctx: &Ctx) -> Result<()> {
    match cmd {
        DockerCommand::Ports { container } => ports(&container, ctx),
    }
}

fn ports(container: &str, ctx: &Ctx) -> Result<()> {
    let ids = endpoint_ids(container, ctx)?;
    let maps = ctx.call(&Request::PortmapLs)?;
    let mut lines = Vec::new();
    for m in items(&maps) {
        if !ids
            .iter()
            .any(|id| m["container_id"].as_str() == Some(id.as_str()))
        {
            continue;
        }
        // `docker port` shows a mapping once per host address it binds:
        // `host_ips`, 0.0.0.0 and :: for one on every address of a
        // dual-stack endpoint, 0.0.0.0 alone when given as such.
        for host_ip in m["host_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            lines.extend(port_lines(m, host_ip));
        }
    }
    lines.sort();
    match ctx.output {
        super::Output::Json => println!("{}", serde_json::to_string_pretty(&lines)?),
        super::Output::Text => {
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// `80/tcp -> 0.0.0.0:8080` (`80/tcp -> [::]:8080` with `host_ip`
/// `::`), one line per port of a range.
fn port_lines(m: &Value, host_ip: &str) -> Vec<String> {
    let range = |key: &str| -> Option<(u16, u16)> {
        let s = m[key].as_str()?;
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (Some((h0, h1)), Some((c0, _))) = (range("host_port"), range("container_port")) else {
        return Vec::new();
    };
    // As `net.JoinHostPort` writes it (docker port's form).
    let host_ip = if host_ip.contains(':') {
        format!("[{host_ip}]")
    } else {
        host_ip.to_owned()
    };
    let proto = m["proto"].as_str().unwrap_or("tcp");
    (0..=h1.saturating_sub(h0))
        .map(|i| format!("{}/{proto} -> {host_ip}:{}", c0 + i, h0 + i))
        .collect()
}

/// The Docker endpoint ids of CONTAINER.
fn endpoint_ids(container: &str, ctx: &Ctx) -> Result<Vec<String>> {
    for r in [
        ContainerRef::Id(container.to_string()),
        ContainerRef::Name(container.to_string()),
    ] {
        if let Ok(c) = ctx.call(&Request::ContainerInspect { container: r })
            && let Some(id) = c["id"].as_str()
        {
            return Ok(vec![id.to_string()]);
        }
    }
    let out = Command::new("docker")
        .args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{json .NetworkSettings.Networks}}",
            container,
        ])
        .output()
        .context("running `docker inspect` (is the docker CLI installed and DOCKER_HOST set?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "no netd container {container} and `docker inspect` does not know it either: {}",
            err.trim()
        );
    }
    let networks: Value =
        serde_json::from_slice(&out.stdout).context("reading `docker inspect`'s networks")?;
    Ok(networks
        .as_object()
        .map(|nets| {
            nets.values()
                .filter_map(|n| n["EndpointID"].as_str())
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}
