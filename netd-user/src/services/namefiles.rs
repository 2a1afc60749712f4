//! Per-container `hosts`, `resolv.conf` and `hostname` files, generated
//! under `<state-dir>/containers/<name>/` for a runtime to bind-mount (as
//! Docker does with its own copies). An engine observer: the files follow
//! every change of a container's endpoints.

use std::{
    fs,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use tracing::warn;

use crate::engine::{
    events::{Event, Observer},
    model::{Container, DEFAULT_NETWORK, Sandbox},
    store::State,
};

/// Docker's fallback when the host has no usable resolver.
const FALLBACK_DNS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
];

pub struct NameFiles {
    /// `<state-dir>/containers`.
    root: PathBuf,
}

impl NameFiles {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: dir_under(state_dir),
        }
    }

    pub fn dir_of(&self, container: &str) -> PathBuf {
        self.root.join(container)
    }

    /// Writes the container's name files.
    fn write(&self, c: &Container, state: &State) -> Result<()> {
        let dir = self.dir_of(&c.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write(&dir.join("hosts"), &hosts_file(c))?;
        write(&dir.join("hostname"), &format!("{}\n", c.names.hostname))?;
        write(
            &dir.join("resolv.conf"),
            &resolv_conf(&nameservers(c, state)),
        )
    }

    fn sync(&self, event: &Event, state: &State) -> Result<()> {
        match event {
            Event::Resync => {
                for c in state.containers.values() {
                    self.write(c, state)?;
                }
                Ok(())
            }
            Event::ContainerAdded(c)
            | Event::EndpointAdded { container: c, .. }
            | Event::EndpointRemoved { container: c, .. } => self.write(c, state),
            Event::ContainerRemoved(c) => remove(&self.dir_of(&c.name)),
            _ => Ok(()),
        }
    }
}

impl Observer for NameFiles {
    fn notify(&self, event: &Event, state: &State) {
        if let Err(e) = self.sync(event, state) {
            warn!("updating generated name files: {e:#}");
        }
    }
}

/// Where the name files of every container live.
pub fn dir_under(state_dir: &Path) -> PathBuf {
    state_dir.join("containers")
}

/// On user-defined networks the container asks netd's DNS responder on
/// its gateway (which forwards what it does not know); elsewhere it asks
/// its own DNS servers or the host's resolvers.
fn nameservers(c: &Container, state: &State) -> Vec<IpAddr> {
    if let Some(ep) = c.primary().filter(|ep| ep.network != DEFAULT_NETWORK)
        && let Some(net) = state.networks.get(&ep.network)
    {
        return vec![net.gateway];
    }
    if !c.names.dns.is_empty() {
        return c.names.dns.clone();
    }
    host_resolvers()
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn hosts_file(c: &Container) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if c.sandbox != Sandbox::Host {
        for ep in &c.endpoints {
            out.push_str(&format!("{}\t{}\n", ep.ip, c.names.hostname));
            if let Some(ip6) = ep.ip6 {
                out.push_str(&format!("{ip6}\t{}\n", c.names.hostname));
            }
        }
    }
    for (name, ip) in &c.names.extra_hosts {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

fn resolv_conf(servers: &[IpAddr]) -> String {
    servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect()
}

/// The host's IPv4 resolvers, without loopback ones (unreachable from a
/// container's namespace), like Docker.
pub fn host_resolvers() -> Vec<IpAddr> {
    let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback())
        .map(IpAddr::V4)
        .collect();
    if found.is_empty() {
        FALLBACK_DNS.to_vec()
    } else {
        found
    }
}

/// Removes a directory of name files (one container's, or all of them).
pub fn remove(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{NameConfig, sample_container};

    #[test]
    fn hosts_has_own_address_and_extra_hosts() {
        let mut c = sample_container();
        c.names = NameConfig {
            hostname: "web".into(),
            dns: vec![],
            extra_hosts: vec![("db".into(), "10.1.2.3".parse().unwrap())],
        };
        let hosts = hosts_file(&c);
        assert!(hosts.contains("172.17.0.2\tweb\n"), "{hosts}");
        assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
        assert_eq!(
            resolv_conf(&["1.1.1.1".parse().unwrap()]),
            "nameserver 1.1.1.1\n"
        );
    }
}
