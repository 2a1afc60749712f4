//! Per-container `hosts`, `resolv.conf` and `hostname` files, generated
//! under `<state-dir>/containers/<name>/` for a runtime to bind-mount (as
//! Docker does with its own copies).

use std::{
    fs,
    io::ErrorKind,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::{
    daemon::Daemon,
    network::DEFAULT_NETWORK,
    state::{ContainerRecord, NetMode},
};

/// Docker's fallback when the host has no usable resolver.
const FALLBACK_DNS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

impl Daemon {
    pub fn names_dir(&self, container: &str) -> PathBuf {
        self.config.state_dir.join("containers").join(container)
    }

    /// Writes the container's name files.
    pub fn write_names(&self, rec: &ContainerRecord) -> Result<()> {
        let dir = self.names_dir(&rec.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write(&dir.join("hosts"), &hosts_file(rec))?;
        write(&dir.join("hostname"), &format!("{}\n", rec.names.hostname))?;
        write(
            &dir.join("resolv.conf"),
            &resolv_conf(&self.nameservers(rec)?),
        )
    }

    /// On user-defined networks the container asks netd's DNS responder on
    /// its gateway (which forwards what it does not know); elsewhere it
    /// asks `--dns` servers or the host's resolvers.
    fn nameservers(&self, rec: &ContainerRecord) -> Result<Vec<Ipv4Addr>> {
        if let Some(ep) = rec.primary().filter(|ep| ep.network != DEFAULT_NETWORK) {
            return Ok(vec![self.network(&ep.network)?.gateway]);
        }
        if !rec.names.dns.is_empty() {
            return Ok(rec.names.dns.clone());
        }
        Ok(host_resolvers())
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn hosts_file(rec: &ContainerRecord) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if rec.mode != NetMode::Host {
        for ep in &rec.endpoints {
            out.push_str(&format!("{}\t{}\n", ep.ip, rec.names.hostname));
        }
    }
    for (name, ip) in &rec.names.extra_hosts {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

fn resolv_conf(servers: &[Ipv4Addr]) -> String {
    servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect()
}

/// The host's IPv4 resolvers, without loopback ones (unreachable from a
/// container's namespace), like Docker.
pub fn host_resolvers() -> Vec<Ipv4Addr> {
    let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found: Vec<Ipv4Addr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect();
    if found.is_empty() {
        FALLBACK_DNS.to_vec()
    } else {
        found
    }
}

/// Removes a container's name files.
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
    use crate::state::{NameConfig, sample_container};

    #[test]
    fn hosts_has_own_address_and_extra_hosts() {
        let mut rec = sample_container();
        rec.names = NameConfig {
            hostname: "web".into(),
            dns: vec![],
            extra_hosts: vec![("db".into(), Ipv4Addr::new(10, 1, 2, 3))],
        };
        let hosts = hosts_file(&rec);
        assert!(hosts.contains("172.17.0.2\tweb\n"), "{hosts}");
        assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
        assert_eq!(
            resolv_conf(&[Ipv4Addr::new(1, 1, 1, 1)]),
            "nameserver 1.1.1.1\n"
        );
    }
}
