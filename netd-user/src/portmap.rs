//! Published ports: Docker's `-p` syntax, conflict rules, and the expansion
//! of a (range) mapping into datapath entries.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use anyhow::{Context, Result, anyhow, bail};
use tracing::info;

use crate::{
    daemon::Daemon,
    hostports::{self, HostSocket},
    state::PortMapRecord,
};
use netd_common::{IPPROTO_TCP, IPPROTO_UDP, PortMapKey, PortMapValue, ServiceKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }

    fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl FromStr for PortRange {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let port = |p: &str| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => bail!("invalid port {p:?}: use a number from 1 to 65535"),
                Ok(n) => Ok(n),
            }
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if end < start {
            bail!("invalid port range {s}: the end is below the start");
        }
        Ok(PortRange { start, end })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One published port or port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// 0.0.0.0: every host address.
    pub host_ip: Ipv4Addr,
    pub host_ports: PortRange,
    pub container_ip: Ipv4Addr,
    pub container_ports: PortRange,
    pub proto: Proto,
}

fn split_proto(spec: &str) -> Result<(&str, Proto)> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Proto::Tcp)),
        Some((rest, "tcp")) => Ok((rest, Proto::Tcp)),
        Some((rest, "udp")) => Ok((rest, Proto::Udp)),
        Some((_, other)) => bail!("invalid protocol {other:?}: use tcp or udp"),
    }
}

fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| anyhow!("invalid IPv4 address {s:?}"))
}

impl PortMapping {
    /// `[HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:CPORT[-END][/tcp|/udp]`.
    pub fn parse_full(spec: &str) -> Result<Self> {
        Self::parse_inner(spec, None)
            .with_context(|| format!("bad port mapping {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:PORT[-END][/tcp|/udp])"))
    }

    /// Docker's `-p [HOSTIP:]HOSTPORT[-END]:CPORT[-END][/tcp|/udp]` for a
    /// container at `container_ip`.
    pub fn parse_publish(spec: &str, container_ip: Ipv4Addr) -> Result<Self> {
        Self::parse_inner(spec, Some(container_ip)).with_context(|| {
            format!(
                "bad -p {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp])"
            )
        })
    }

    /// Just the host side, `[HOSTIP:]HOSTPORT[-END][/proto]`, which is
    /// enough to name a mapping for `portmap rm`.
    pub fn parse_host_side(spec: &str) -> Result<Self> {
        let parsed = (|| -> Result<Self> {
            let (addr, proto) = split_proto(spec)?;
            let (host_ip, ports) = match addr.rsplit_once(':') {
                Some((ip, ports)) => (parse_ip(ip)?, ports),
                None => (Ipv4Addr::UNSPECIFIED, addr),
            };
            let host_ports: PortRange = ports.parse()?;
            Ok(PortMapping {
                host_ip,
                host_ports,
                container_ip: Ipv4Addr::UNSPECIFIED,
                container_ports: host_ports,
                proto,
            })
        })();
        parsed.with_context(|| format!("bad port mapping {spec:?} (expected [HOSTIP:]HOSTPORT[-END]:CONTAINER_IP:PORT[-END][/tcp|/udp] or [HOSTIP:]HOSTPORT[-END][/tcp|/udp])"))
    }

    fn parse_inner(spec: &str, container_ip: Option<Ipv4Addr>) -> Result<Self> {
        let (addr, proto) = split_proto(spec)?;
        let parts: Vec<&str> = addr.split(':').collect();
        let (host_ip, host_ports, container_ip, container_ports) =
            match (container_ip, parts.as_slice()) {
                (None, [hp, cip, cp]) => (
                    Ipv4Addr::UNSPECIFIED,
                    hp.parse()?,
                    parse_ip(cip)?,
                    cp.parse()?,
                ),
                (None, [hip, hp, cip, cp]) => {
                    (parse_ip(hip)?, hp.parse()?, parse_ip(cip)?, cp.parse()?)
                }
                (Some(cip), [hp, cp]) => (Ipv4Addr::UNSPECIFIED, hp.parse()?, cip, cp.parse()?),
                (Some(cip), [hip, hp, cp]) => (parse_ip(hip)?, hp.parse()?, cip, cp.parse()?),
                _ => bail!("wrong number of ':'-separated fields"),
            };
        let mapping = PortMapping {
            host_ip,
            host_ports,
            container_ip,
            container_ports,
            proto,
        };
        mapping.check_lengths()?;
        Ok(mapping)
    }

    fn check_lengths(&self) -> Result<()> {
        if self.host_ports.len() != self.container_ports.len() {
            bail!(
                "host ports {} and container ports {} are ranges of different lengths",
                self.host_ports,
                self.container_ports
            );
        }
        Ok(())
    }

    /// True when both claim a host ip/port/protocol: same protocol,
    /// overlapping ports, and the same host ip or either one a wildcard.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        let ips_meet = self.host_ip == other.host_ip
            || self.host_ip.is_unspecified()
            || other.host_ip.is_unspecified();
        self.proto == other.proto && ips_meet && self.host_ports.overlaps(other.host_ports)
    }

    /// The host side, which identifies a mapping: `[ip:]ports/proto`.
    pub fn host_side(&self) -> String {
        if self.host_ip.is_unspecified() {
            format!("{}/{}", self.host_ports, self.proto)
        } else {
            format!("{}:{}/{}", self.host_ip, self.host_ports, self.proto)
        }
    }

    /// One datapath entry per port of the range.
    pub fn entries(&self) -> impl Iterator<Item = (PortMapKey, PortMapValue)> + '_ {
        (0..self.host_ports.len()).map(move |i| {
            let offset = i as u16;
            let key = PortMapKey {
                host_ip: u32::from(self.host_ip).to_be(),
                host_port: (self.host_ports.start + offset).to_be(),
                proto: self.proto.number(),
                pad: 0,
            };
            let value = PortMapValue {
                container_ip: u32::from(self.container_ip).to_be(),
                container_port: (self.container_ports.start + offset).to_be(),
                pad: 0,
            };
            (key, value)
        })
    }
}

impl PortMapping {
    /// Whether `socket` would lose traffic to this mapping: same protocol,
    /// a port in the range, and addresses that meet (either side a
    /// wildcard, or the same IPv4 address; an IPv6 wildcard socket
    /// normally takes IPv4 too).
    pub fn takes_from(&self, socket: &HostSocket) -> bool {
        let ports = self.host_ports;
        if socket.proto != self.proto.number()
            || socket.port < ports.start
            || socket.port > ports.end
        {
            return false;
        }
        let socket_v4 = match socket.addr {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        socket.addr.is_unspecified()
            || self.host_ip.is_unspecified()
            || socket_v4 == Some(self.host_ip)
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.host_ip.is_unspecified() {
            write!(f, "{}:", self.host_ip)?;
        }
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ports, self.container_ip, self.container_ports, self.proto
        )
    }
}

impl Daemon {
    /// Publishes `mappings` (all or none) for containers netd manages.
    /// `force`: publish even over a port a host process listens on.
    pub async fn portmap_add(
        &mut self,
        mappings: Vec<PortMapping>,
        force: bool,
    ) -> Result<Vec<PortMapRecord>> {
        let records = self.check_new_portmaps(mappings)?;
        let mappings: Vec<_> = records.iter().map(|r| r.mapping.clone()).collect();
        self.check_host_side(&mappings, force).await?;
        let entries: Vec<_> = records
            .iter()
            .flat_map(|r| r.mapping.entries().collect::<Vec<_>>())
            .collect();
        if let Err(e) = self.datapath.insert_portmaps(&entries) {
            let keys: Vec<_> = entries.iter().map(|(k, _)| *k).collect();
            let _ = self.datapath.remove_portmaps(&keys);
            return Err(e);
        }
        self.store.put_portmaps(&records)?;
        self.sync_services()?;
        for rec in &records {
            info!(mapping = %rec.mapping, container = %rec.container, "port published");
        }
        Ok(records)
    }

    /// Refuses mappings that clash with published ports or each other.
    pub fn check_port_conflicts(&self, mappings: &[PortMapping]) -> Result<()> {
        let mut taken: Vec<PortMapping> = self
            .store
            .portmaps()?
            .into_iter()
            .map(|r| r.mapping)
            .collect();
        for mapping in mappings {
            if let Some(other) = taken.iter().find(|t| t.conflicts_with(mapping)) {
                bail!(
                    "port mapping {mapping} conflicts with existing mapping {other}: host port {} is already published; pick another host port or remove the other mapping",
                    mapping.host_side()
                );
            }
            taken.push(mapping.clone());
        }
        Ok(())
    }

    /// The host side of new mappings: the host address must be one of the
    /// host's (or loopback, or any), and, unless `force`, no process of the
    /// host may be listening on the port (it would silently lose it).
    pub async fn check_host_side(&self, mappings: &[PortMapping], force: bool) -> Result<()> {
        let host_addrs = self.netlink.host_ipv4_addrs().await?;
        for mapping in mappings {
            let ip = mapping.host_ip;
            if !ip.is_unspecified() && !ip.is_loopback() && !host_addrs.contains(&ip) {
                bail!(
                    "host address {ip} in {mapping} is not an address of this host: use one of its addresses, a loopback address, or no HOSTIP for all of them"
                );
            }
        }
        if force {
            return Ok(());
        }
        let sockets = hostports::listening()?;
        for mapping in mappings {
            if let Some(socket) = sockets.iter().find(|s| mapping.takes_from(s)) {
                bail!(
                    "host port {}/{} is in use by a process on the host (listening on {}): publishing it would take it away from that process; stop it, pick another host port, or take the port anyway with --force-publish (`portmap add --force`)",
                    socket.port,
                    mapping.proto,
                    std::net::SocketAddr::new(socket.addr, socket.port)
                );
            }
        }
        Ok(())
    }

    /// Validates new mappings against the containers and against every
    /// existing mapping (and each other).
    fn check_new_portmaps(&self, mappings: Vec<PortMapping>) -> Result<Vec<PortMapRecord>> {
        self.check_port_conflicts(&mappings)?;
        let containers = self.store.containers()?;
        mappings
            .into_iter()
            .map(|mapping| {
                let Some((owner, ep)) = containers.iter().find_map(|c| {
                    c.endpoints
                        .iter()
                        .find(|e| e.ip == mapping.container_ip)
                        .map(|e| (c, e))
                }) else {
                    bail!(
                        "no container has address {}: publish ports of a container netd manages (see `netd container ls`)",
                        mapping.container_ip
                    );
                };
                self.refuse_internal(&ep.network)?;
                Ok(PortMapRecord { mapping, container: owner.name.clone() })
            })
            .collect()
    }

    /// Docker and netavark apply no port mappings on `--internal` networks:
    /// nothing outside may reach in.
    pub fn refuse_internal(&self, network: &str) -> Result<()> {
        if self.network(network)?.internal {
            bail!(
                "network {network} is internal: its containers cannot publish ports (nothing outside reaches an internal network); connect the container to another network and publish there"
            );
        }
        Ok(())
    }

    /// Unpublishes the mapping whose host side matches `spec`'s.
    /// `spec` is a full mapping (`HOSTPORT:CONTAINER_IP:PORT`, which must
    /// match exactly) or just a host side (`[HOSTIP:]HOSTPORT[/proto]`).
    pub fn portmap_rm(&mut self, spec: &str) -> Result<PortMapRecord> {
        let (wanted, full) = match PortMapping::parse_full(spec) {
            Ok(mapping) => (mapping, true),
            Err(_) => (PortMapping::parse_host_side(spec)?, false),
        };
        let record = self
            .store
            .portmaps()?
            .into_iter()
            .find(|r| {
                if full {
                    r.mapping == wanted
                } else {
                    r.mapping.host_side() == wanted.host_side()
                }
            })
            .ok_or_else(|| {
                let what = if full {
                    wanted.to_string()
                } else {
                    wanted.host_side()
                };
                anyhow!("no port mapping {what} exists (see `netd portmap ls`)")
            })?;
        self.unpublish(std::slice::from_ref(&record))?;
        Ok(record)
    }

    /// Removes mappings from the datapath and the store.
    pub fn unpublish(&mut self, records: &[PortMapRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = records
            .iter()
            .flat_map(|r| r.mapping.entries().map(|(k, _)| k).collect::<Vec<_>>())
            .collect();
        self.datapath.remove_portmaps(&keys)?;
        self.store.delete_portmaps(records)?;
        self.sync_services()?;
        for rec in records {
            info!(mapping = %rec.mapping, "port unpublished");
        }
        Ok(())
    }

    /// Mappings that send traffic to container `name`.
    pub fn portmaps_of(&self, name: &str) -> Result<Vec<PortMapRecord>> {
        Ok(self
            .store
            .portmaps()?
            .into_iter()
            .filter(|r| r.container == name)
            .collect())
    }

    /// Makes the kernel's port map equal to the stored mappings (after a
    /// restart, or a map that was recreated).
    pub fn reconcile_portmaps(&mut self) -> Result<()> {
        let records = self.store.portmaps()?;
        let entries: Vec<_> = records
            .iter()
            .flat_map(|r| r.mapping.entries().collect::<Vec<_>>())
            .collect();
        let stale: Vec<_> = self
            .datapath
            .portmap_keys()?
            .into_iter()
            .filter(|k| !entries.iter().any(|(e, _)| e == k))
            .collect();
        self.datapath.remove_portmaps(&stale)?;
        self.datapath.insert_portmaps(&entries)?;
        self.sync_services()
    }

    /// Makes the datapath's set of published container ports follow the
    /// stored mappings (several mappings may point at one port).
    fn sync_services(&mut self) -> Result<()> {
        let services = self
            .store
            .portmaps()?
            .iter()
            .flat_map(|r| r.mapping.entries().collect::<Vec<_>>())
            .map(|(key, value)| ServiceKey {
                container_ip: value.container_ip,
                container_port: value.container_port,
                proto: key.proto,
                pad: 0,
            })
            .collect();
        self.datapath.sync_services(&services)
    }
}

pub fn records_json(records: &[PortMapRecord]) -> serde_json::Value {
    serde_json::Value::Array(
        records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "spec": r.mapping.to_string(),
                    "host_ip": r.mapping.host_ip,
                    "host_port": r.mapping.host_ports.to_string(),
                    "container_ip": r.mapping.container_ip,
                    "container_port": r.mapping.container_ports.to_string(),
                    "proto": r.mapping.proto,
                    "container": r.container,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_readme_example() {
        let m = PortMapping::parse_full("8088:172.17.0.2:80").unwrap();
        assert_eq!(m.host_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            m.host_ports,
            PortRange {
                start: 8088,
                end: 8088
            }
        );
        assert_eq!(m.container_ip, Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(m.container_ports, PortRange { start: 80, end: 80 });
        assert_eq!(m.proto, Proto::Tcp);
        assert_eq!(m.to_string(), "8088:172.17.0.2:80/tcp");
    }

    #[test]
    fn parses_host_ip_ranges_and_udp() {
        let m = PortMapping::parse_full("198.18.0.1:5000-5002:172.17.0.3:6000-6002/udp").unwrap();
        assert_eq!(m.host_ip, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(m.proto, Proto::Udp);
        let ports: Vec<_> = m
            .entries()
            .map(|(k, v)| (u16::from_be(k.host_port), u16::from_be(v.container_port)))
            .collect();
        assert_eq!(ports, vec![(5000, 6000), (5001, 6001), (5002, 6002)]);
    }

    #[test]
    fn parses_docker_publish() {
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        let m = PortMapping::parse_publish("127.0.0.1:8080:80/udp", ip).unwrap();
        assert_eq!(m.host_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(m.container_ip, ip);
        assert_eq!(m.proto, Proto::Udp);
        assert!(PortMapping::parse_publish("8080:80", ip).is_ok());
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "8088",
            "8088:80",
            "0:172.17.0.2:80",
            "70000:172.17.0.2:80",
            "8088:172.17.0.2:80/sctp",
            "8088-8090:172.17.0.2:80",
            "8090-8088:172.17.0.2:80-82",
            "x:172.17.0.2:80",
            "8088:1.2.3:80",
        ] {
            assert!(PortMapping::parse_full(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflicts_follow_host_ip_port_and_protocol() {
        let a = PortMapping::parse_full("8088:172.17.0.2:80").unwrap();
        let b = PortMapping::parse_full("127.0.0.1:8088:172.17.0.3:80").unwrap();
        let c = PortMapping::parse_full("8088:172.17.0.3:80/udp").unwrap();
        let d = PortMapping::parse_full("8080-8090:172.17.0.3:80-90").unwrap();
        let e = PortMapping::parse_full("127.0.0.1:9000:172.17.0.3:80").unwrap();
        let f = PortMapping::parse_full("127.0.0.2:9000:172.17.0.3:80").unwrap();
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
        assert!(a.conflicts_with(&d));
        assert!(!e.conflicts_with(&f));
    }

    #[test]
    fn mappings_meet_sockets_by_address_port_and_protocol() {
        let ssh = HostSocket {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 22,
            proto: IPPROTO_TCP,
        };
        assert!(
            PortMapping::parse_full("22:172.17.0.2:22")
                .unwrap()
                .takes_from(&ssh)
        );
        assert!(
            PortMapping::parse_full("20-30:172.17.0.2:20-30")
                .unwrap()
                .takes_from(&ssh)
        );
        assert!(
            PortMapping::parse_full("127.0.0.1:22:172.17.0.2:22")
                .unwrap()
                .takes_from(&ssh)
        );
        assert!(
            !PortMapping::parse_full("127.0.0.2:22:172.17.0.2:22")
                .unwrap()
                .takes_from(&ssh)
        );
        assert!(
            !PortMapping::parse_full("22:172.17.0.2:22/udp")
                .unwrap()
                .takes_from(&ssh)
        );
        assert!(
            !PortMapping::parse_full("23:172.17.0.2:22")
                .unwrap()
                .takes_from(&ssh)
        );
        let any6 = HostSocket {
            addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            port: 80,
            proto: IPPROTO_TCP,
        };
        assert!(
            PortMapping::parse_full("198.18.0.1:80:172.17.0.2:80")
                .unwrap()
                .takes_from(&any6)
        );
    }
}
