//! The datapaths under test, each built on a fresh testbed: netd (the real
//! daemon and CLI), optionally a second netd binary as the baseline of an
//! A/B, Docker's iptables rules (minimal and full), the nftables
//! equivalent, plain routing without NAT, and the host itself.

use std::{
    fmt, fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::{
    procs,
    rules::{self, BRIDGE, CONTAINER_IP, EXTRA_BASE, Style},
    testbed::{Daemon, EXT_IP, EXT_IP6, HOST_IP, HOST_IP6, Topology, ip, sysctl},
};

const LOAD_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The netd daemon and CLI (eBPF datapath).
    Netd,
    /// Another netd binary (`--baseline-bin`), set up exactly like netd.
    /// Not selectable by name: only `--baseline-bin` adds it, as the binary
    /// is what makes it a datapath.
    #[value(skip)]
    NetdBaseline,
    /// Docker's NAT rules: DNAT, MASQUERADE, FORWARD accepts.
    Iptables,
    /// Docker's full per-port rule set (filter ACCEPT, hairpin MASQUERADE).
    DockerFull,
    /// The nftables equivalent, published ports in a map.
    Nftables,
    /// No NAT: ext routes the container subnet via the host.
    Routed,
    /// The server in the host namespace (no forwarding: the ceiling).
    Host,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Netd,
        Kind::Iptables,
        Kind::DockerFull,
        Kind::Nftables,
        Kind::Routed,
        Kind::Host,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Netd => "netd",
            Kind::NetdBaseline => "netd-baseline",
            Kind::Iptables => "iptables",
            Kind::DockerFull => "docker-full",
            Kind::Nftables => "nftables",
            Kind::Routed => "routed",
            Kind::Host => "host",
        }
    }

    /// Name in the report's tables and the plot's legend.
    pub fn title(self) -> &'static str {
        match self {
            Kind::NetdBaseline => "netd (baseline)",
            _ => self.name(),
        }
    }

    /// Whether the datapath runs a netd daemon (and so takes a binary).
    pub fn is_netd(self) -> bool {
        matches!(self, Kind::Netd | Kind::NetdBaseline)
    }

    /// Whether the datapath publishes ports (and so has a port-count test).
    pub fn publishes(self) -> bool {
        !matches!(self, Kind::Routed | Kind::Host)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// Where a client connects to.
#[derive(Clone, Debug)]
pub struct Target {
    pub ip: &'static str,
    pub port: u16,
}

impl Target {
    /// `http://ip:port/`, an IPv6 address in brackets.
    pub fn url(&self) -> String {
        if self.ip.contains(':') {
            format!("http://[{}]:{}/", self.ip, self.port)
        } else {
            format!("http://{}:{}/", self.ip, self.port)
        }
    }
}

/// An address family of the dual-stack testbed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// A datapath, ready for traffic. Fields drop in order: the daemon (which
/// runs `netd down`) before the namespaces.
pub struct Bed {
    pub kind: Kind,
    daemon: Option<Daemon>,
    topo: Topology,
    extra_ports: u32,
    /// Client source addresses used so far (see `fresh_source`).
    sources: u8,
    /// Whether the testbed is dual-stack (see `up_dual`).
    dual: bool,
}

impl Bed {
    /// `netd_bin`: the binary of `kind` if it runs netd (see
    /// `Kind::is_netd`), ignored otherwise.
    pub fn up(kind: Kind, netd_bin: &Path) -> Result<Self> {
        Self::build(kind, netd_bin, false)
    }

    /// Like `up`, dual-stack: the uplink also has IPv6 (2001:2::/64), the
    /// containers also an address of fd00:172:17::/64 (netd: the default
    /// bridge's `--default-subnet6`), and the netfilter datapaths also
    /// their ip6tables or nftables NAT66 rules, as Docker's with `--ipv6`
    /// and `ip6tables: true`.
    pub fn up_dual(kind: Kind, netd_bin: &Path) -> Result<Self> {
        Self::build(kind, netd_bin, true)
    }

    fn build(kind: Kind, netd_bin: &Path, dual: bool) -> Result<Self> {
        let topo = Topology::new()?;
        if dual {
            topo.add_ipv6()?;
        }
        let daemon = match kind {
            _ if kind.is_netd() => Some(netd_containers(&topo, netd_bin, dual)?),
            Kind::Host => None,
            _ => {
                plumb(&topo, dual)?;
                None
            }
        };
        let bed = Bed {
            kind,
            daemon,
            topo,
            extra_ports: 0,
            sources: 0,
            dual,
        };
        bed.nat_rules(0)?;
        if kind == Kind::Routed {
            ip(&[
                "-n",
                &bed.topo.ext(),
                "route",
                "add",
                rules::SUBNET,
                "via",
                HOST_IP,
            ])?;
        }
        Ok(bed)
    }

    pub fn dual(&self) -> bool {
        self.dual
    }

    pub fn topo(&self) -> &Topology {
        &self.topo
    }

    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }

    /// The namespace the servers (nginx, iperf3) run in.
    pub fn server_ns(&self) -> String {
        match self.kind {
            Kind::Host => self.topo.host(),
            _ => self.topo.container(1),
        }
    }

    /// Port nginx listens on in `server_ns`.
    pub fn http_listen_port(&self) -> u16 {
        match self.kind {
            Kind::Host => 8080,
            _ => 80,
        }
    }

    /// The HTTP server as seen from ext.
    pub fn http(&self) -> Target {
        match self.kind {
            Kind::Routed => Target {
                ip: CONTAINER_IP,
                port: 80,
            },
            _ => Target {
                ip: HOST_IP,
                port: 8080,
            },
        }
    }

    /// The iperf3 server (port 5201 in `server_ns`) as seen from ext.
    pub fn iperf_in(&self) -> Target {
        let ip = match self.kind {
            Kind::Routed => CONTAINER_IP,
            _ => HOST_IP,
        };
        Target { ip, port: 5201 }
    }

    /// Namespace of the outbound client (to the iperf3 server in ext).
    pub fn outbound_client_ns(&self) -> String {
        self.server_ns()
    }

    pub fn ext_server() -> Target {
        Target {
            ip: EXT_IP,
            port: 5201,
        }
    }

    /// The published HTTP port in `family` (dual-stack beds), from ext.
    pub fn http_in(&self, family: Family) -> Target {
        match family {
            Family::V4 => self.http(),
            Family::V6 => Target {
                ip: HOST_IP6,
                port: 8080,
            },
        }
    }

    /// The published iperf3 port in `family` (dual-stack beds), from ext.
    pub fn iperf_in_family(&self, family: Family) -> Target {
        match family {
            Family::V4 => self.iperf_in(),
            Family::V6 => Target {
                ip: HOST_IP6,
                port: 5201,
            },
        }
    }

    /// ext's iperf3 server in `family`.
    pub fn ext_server_in(family: Family) -> Target {
        match family {
            Family::V4 => Self::ext_server(),
            Family::V6 => Target {
                ip: EXT_IP6,
                port: 5201,
            },
        }
    }

    /// Client namespace and server of the container-to-container test.
    pub fn c2c(&self) -> Option<(String, Target)> {
        (self.kind != Kind::Host).then(|| {
            let server = Target {
                ip: CONTAINER_IP,
                port: 5201,
            };
            (self.topo.container(2), server)
        })
    }

    /// Makes ext's clients use a new source address, 198.18.0.10 and up, so
    /// that the next connection-rate run opens connections with 4-tuples no
    /// datapath has seen: without it wrk's ports wrap around within a run,
    /// and a reused tuple is a conntrack hit in netd but a re-created entry
    /// (rules evaluated again) in netfilter.
    pub fn fresh_source(&mut self) -> Result<()> {
        let addr = self.topo.client_source(self.sources)?;
        if self.dual {
            self.topo.client_source6(self.sources)?;
        }
        self.sources += 1;
        if self.kind == Kind::Routed {
            let ext = self.topo.ext();
            let via = ["via", HOST_IP, "src", &addr];
            ip(&[&["-n", &ext, "route", "replace", rules::SUBNET][..], &via].concat())?;
        }
        Ok(())
    }

    /// Sets the extra published TCP ports (10000 and up, besides the
    /// measured ones) to `total`; returns how long installing them took
    /// (netd: one `portmap add` of the whole range, after an untimed `rm`
    /// of the previous one; netfilter: one atomic reload of the rule set),
    /// or `None` if nothing changed.
    pub fn set_extra(&mut self, total: u32) -> Result<Option<Duration>> {
        if total == self.extra_ports {
            return Ok(None);
        }
        let took = match &self.daemon {
            Some(daemon) => {
                if self.extra_ports > 0 {
                    daemon.cli(&["portmap", "rm", &extra_range(self.extra_ports)])?;
                }
                let start = Instant::now();
                if total > 0 {
                    daemon.cli(&["portmap", "add", &extra_range(total)])?;
                }
                start.elapsed()
            }
            None => {
                let start = Instant::now();
                self.nat_rules(total)?;
                start.elapsed()
            }
        };
        self.extra_ports = total;
        Ok(Some(took))
    }

    /// Loads the netfilter rules of this datapath with `extra` ports.
    fn nat_rules(&self, extra: u32) -> Result<()> {
        let (tool, text) = match self.kind {
            Kind::Iptables => ("iptables-restore", rules::iptables(Style::Minimal, extra)),
            Kind::DockerFull => (
                "iptables-restore",
                rules::iptables(Style::DockerFull, extra),
            ),
            Kind::Nftables => ("nft", rules::nftables(extra)),
            _ => return Ok(()),
        };
        self.load_rules(tool, &text, "rules")?;
        if !self.dual {
            return Ok(());
        }
        match self.kind {
            Kind::Iptables => self.load_rules("ip6tables-restore", &rules::ip6tables(), "rules6"),
            Kind::Nftables => self.load_rules("nft", &rules::nftables6(), "rules6"),
            _ => bail!("{} has no IPv6 rules", self.kind),
        }
    }

    fn load_rules(&self, tool: &str, text: &str, name: &str) -> Result<()> {
        let file = self.topo.tmp().join(name);
        fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        let mut load = procs::in_ns(&self.topo.host(), tool);
        if tool == "nft" {
            load.arg("-f");
        }
        procs::run_within(load.arg(&file), LOAD_LIMIT)?;
        Ok(())
    }
}

/// `10000-(10000+n-1):172.17.0.2:10000-(10000+n-1)`, n > 0.
fn extra_range(n: u32) -> String {
    let first = u32::from(EXTRA_BASE);
    let last = first + n - 1;
    format!("{first}-{last}:{CONTAINER_IP}:{first}-{last}")
}

/// netd daemon plus containers c1 (published ports) and c2; `dual`: the
/// default bridge is dual-stack.
fn netd_containers(topo: &Topology, bin: &Path, dual: bool) -> Result<Daemon> {
    let daemon = if dual {
        Daemon::start_with(topo, bin, &["--default-subnet6", rules::SUBNET6])?
    } else {
        Daemon::start(topo, bin)?
    };
    let mut add = vec!["container".to_owned(), "add".to_owned(), topo.container(1)];
    for (hport, cport) in rules::PUBLISHED {
        add.extend(["-p".to_owned(), format!("{hport}:{cport}")]);
    }
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    daemon.cli(&add)?;
    daemon.cli(&["container", "add", &topo.container(2)])?;
    Ok(daemon)
}

/// Docker's plumbing by hand: bridge 172.17.0.1/16 in the host namespace,
/// containers c1 (172.17.0.2) and c2 (172.17.0.3) on veths; `dual`: also
/// fd00:172:17::1/64 on the bridge, ::2 and ::3 in the containers, and
/// IPv6 forwarding on, as Docker's `--ipv6` does.
fn plumb(topo: &Topology, dual: bool) -> Result<()> {
    let host = topo.host();
    ip(&["-n", &host, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", &host, "addr", "add", "172.17.0.1/16", "dev", BRIDGE])?;
    if dual {
        let gw = format!("{}/64", rules::GATEWAY6);
        ip(&["-n", &host, "addr", "add", &gw, "dev", BRIDGE, "nodad"])?;
        sysctl(&host, "net.ipv6.conf.all.forwarding=1")?;
    }
    ip(&["-n", &host, "link", "set", BRIDGE, "up"])?;
    for n in 1..=2 {
        container(topo, n, dual)?;
    }
    Ok(())
}

fn container(topo: &Topology, n: usize, dual: bool) -> Result<()> {
    let (host, ns) = (topo.host(), topo.container(n));
    let veth = format!("veth{n}");
    let addr = format!("172.17.0.{}/16", n + 1);
    ip(&["netns", "add", &ns])?;
    ip(&[
        "-n", &host, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["-n", &host, "link", "set", &veth, "master", BRIDGE, "up"])?;
    ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "route", "add", "default", "via", "172.17.0.1"])?;
    if dual {
        let addr6 = format!("fd00:172:17::{}/64", n + 1);
        ip(&["-n", &ns, "addr", "add", &addr6, "dev", "eth0", "nodad"])?;
        let gw = rules::GATEWAY6;
        ip(&["-n", &ns, "-6", "route", "add", "default", "via", gw])?;
    }
    Ok(())
}
