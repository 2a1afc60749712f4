//! The verbs, as a client of the daemon: each turns the runtime's
//! environment and configuration into socket API requests (the engine's
//! typed inputs) and the daemon's answers into a CNI result or error.
//!
//! Identity: the netd container's id is `CNI_CONTAINERID`; each attachment
//! is one endpoint, found by `CNI_IFNAME`, whose endpoint id
//! `cni:<config name>:<container id>:<ifname>` marks it as this
//! configuration's (GC touches no other). The first ADD of a container
//! adds it (in the runtime's namespace, which netd never deletes); an ADD
//! with another interface name connects it to one more network; a DEL
//! disconnects one interface, and removes the container with its last.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde_json::Value;

use super::{
    client::{CallError, Daemon},
    env::Attach,
    sandbox,
    spec::{
        CniError, CniResult, Dns, Interface, IpConfig, NetConf, Route, code, parse_ip,
        version_at_least,
    },
};
use crate::{
    api::Request,
    engine::{
        ipam::format_mac,
        model::{DEFAULT_NETWORK, PortMapping, PortRange, Proto},
        requests::{
            ContainerAdd, ContainerRef, EndpointRef, EndpointRequest, Publish, SandboxRequest,
            merge_family_wildcards,
        },
        validate,
    },
};

/// `cni:<config name>:<container id>:<ifname>`.
fn endpoint_id(conf_name: &str, container_id: &str, ifname: &str) -> String {
    format!("{}{container_id}:{ifname}", endpoint_prefix(conf_name))
}

fn endpoint_prefix(conf_name: &str) -> String {
    format!("cni:{conf_name}:")
}

fn conf_name(conf: &NetConf) -> &str {
    conf.name.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// ADD

pub fn add(conf: &NetConf, version: &str, att: &Attach) -> Result<Value, CniError> {
    conf.validate()?;
    let netns = att
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is not set"))?;
    if !netns.exists() {
        return Err(CniError::invalid_env(format!(
            "CNI_NETNS {} does not exist: the runtime must create the namespace before ADD",
            netns.display()
        )));
    }
    let prev = conf
        .prev_result
        .as_ref()
        .map(CniResult::decode)
        .transpose()?;
    let (ip, ip6) = static_ips(conf, att)?;
    let publish = publishes(conf)?;
    let daemon = Daemon::new(conf.socket());
    let network = conf.network();
    let networks = daemon
        .call(&Request::NetworkLs)
        .map_err(|e| e.to_cni("listing netd's networks"))?;
    if network_internal(&networks, network).is_none() {
        return Err(CniError::new(
            code::NOT_FOUND,
            format!(
                "netd network {network} does not exist: create it with `netd network create {network}`, or set \"network\" in the configuration to one `netd network ls` shows"
            ),
        ));
    }
    let endpoint = EndpointRequest {
        network: network.to_owned(),
        id: Some(endpoint_id(conf_name(conf), &att.container_id, &att.ifname)),
        ifname: Some(att.ifname.clone()),
        ip,
        ip6,
        peer_on_host: false,
    };
    let id = ContainerRef::Id(att.container_id.clone());
    let container = match daemon.call(&Request::ContainerInspect {
        container: id.clone(),
    }) {
        Ok(existing) => connect(&daemon, &existing, netns, endpoint, &publish, att)?,
        Err(e) if e.is_not_found() => create(&daemon, netns, endpoint, publish, att)?,
        Err(e) => return Err(e.to_cni("looking up the container")),
    };
    let mine = result_of(&container, &att.ifname, &networks, netns)?;
    let result = match prev {
        Some(mut prev) => {
            prev.append(mine);
            prev
        }
        None => mine,
    };
    Ok(serde_json::to_value(result.in_version(version)).unwrap_or_default())
}

/// Fixed addresses, IPv4 and IPv6: `CNI_ARGS IP=`, the `ips` capability
/// and `args.cni.ips`, at most one of each family (an interface has one
/// address of each).
fn static_ips(conf: &NetConf, att: &Attach) -> Result<(Option<IpAddr>, Option<IpAddr>), CniError> {
    let asked: Vec<String> = att
        .args
        .get("IP")
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::to_owned)
        .chain(conf.requested_ips())
        .collect();
    let (mut v4, mut v6) = (None, None);
    for text in &asked {
        let ip = parse_ip(text)?;
        let slot = if ip.is_ipv4() { &mut v4 } else { &mut v6 };
        match slot {
            Some(other) if *other != ip => {
                return Err(CniError::invalid_config(format!(
                    "addresses {other} and {ip} asked for one interface: netd gives an interface one IPv4 and one IPv6 address, ask for at most one of each"
                )));
            }
            _ => *slot = Some(ip),
        }
    }
    Ok((v4, v6))
}

/// `runtimeConfig.portMappings` as the engine's `-p`. As the reference
/// portmap plugin reads `hostIP`: none (or `""`) is every address of both
/// families, `0.0.0.0` every IPv4 address, `::` every IPv6 address, any
/// other that address; a mapping listed once per family is one mapping
/// on both (`merge_family_wildcards`).
fn publishes(conf: &NetConf) -> Result<Vec<Publish>, CniError> {
    Ok(merge_family_wildcards(publishes_listed(conf)?))
}

fn publishes_listed(conf: &NetConf) -> Result<Vec<Publish>, CniError> {
    conf.runtime_config
        .port_mappings
        .iter()
        .map(|m| {
            let proto = match m.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("") | Some("tcp") => Proto::Tcp,
                Some("udp") => Proto::Udp,
                Some(other) => {
                    return Err(CniError::invalid_config(format!(
                        "port mapping {}:{}/{other}: netd publishes tcp and udp ports only",
                        m.host_port, m.container_port
                    )));
                }
            };
            let host_ip = match m.host_ip.as_deref() {
                None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(text) => text.parse().map_err(|_| {
                    CniError::invalid_config(format!(
                        "port mapping with hostIP {text:?}: give an address of the host, or none for all"
                    ))
                })?,
            };
            // `0.0.0.0` written out is IPv4 only (netd's `-p 0.0.0.0:P:C`);
            // `::` is IPv6 only and one IPv6 address is that address, as
            // netd's `-p [ADDR]:P:C`.
            let ipv4_only = m.host_ip.as_deref().is_some_and(|t| !t.is_empty())
                && host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            if m.container_port == 0 {
                return Err(CniError::invalid_config(
                    "port mapping with containerPort 0: give the container's port",
                ));
            }
            Ok(Publish {
                host_ip,
                host_ports: PortRange::single(m.host_port),
                container_ports: PortRange::single(m.container_port),
                proto,
                ipv4_only,
            })
        })
        .collect()
}

/// The first ADD of a container: a netd container in the runtime's
/// namespace, named after the runtime's name for it where it passes one.
fn create(
    daemon: &Daemon,
    netns: &Path,
    endpoint: EndpointRequest,
    publish: Vec<Publish>,
    att: &Attach,
) -> Result<Value, CniError> {
    let mut last = None;
    for name in name_candidates(att) {
        let hostname = validate::is_valid_hostname(&name).then(|| name.clone());
        let request = Request::ContainerAdd(ContainerAdd {
            name: name.clone(),
            id: Some(att.container_id.clone()),
            sandbox: SandboxRequest::Given {
                path: netns.to_owned(),
            },
            endpoint: Some(endpoint.clone()),
            publish: publish.clone(),
            force_publish: false,
            hostname,
            dns: Vec::new(),
            extra_hosts: Vec::new(),
        });
        match daemon.call(&request) {
            Ok(container) => return Ok(container),
            Err(e @ CallError::Failed { .. }) if name_taken(daemon, &name) => last = Some(e),
            Err(e) => return Err(e.to_cni("adding the container to netd")),
        }
    }
    Err(last
        .map(|e| e.to_cni("adding the container to netd"))
        .unwrap_or_else(|| CniError::new(code::ALREADY_EXISTS, "no free container name")))
}

fn name_taken(daemon: &Daemon, name: &str) -> bool {
    daemon
        .call(&Request::ContainerInspect {
            container: ContainerRef::Name(name.to_owned()),
        })
        .is_ok()
}

/// Names to try, in order: the runtime's (`K8S_POD_NAME`, which podman
/// sets to the container's name), that with the id's first 12 characters,
/// the id's first 12, the whole id.
fn name_candidates(att: &Attach) -> Vec<String> {
    let id = &att.container_id;
    let short: String = id.chars().take(12).collect();
    let mut out = Vec::new();
    if let Some(pod) = att.args.get("K8S_POD_NAME").map(|n| sanitize(n))
        && !pod.is_empty()
    {
        out.push(pod.clone());
        out.push(sanitize(&format!("{pod}-{short}")));
    }
    out.push(short);
    out.push(id.chars().take(64).collect());
    let mut seen = BTreeSet::new();
    out.retain(|n| validate::is_valid_name(n) && seen.insert(n.clone()));
    out
}

/// netd's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64.
fn sanitize(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = replaced.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    // Keep the end of over-long names from colliding: cut, then trim.
    trimmed.chars().take(64).collect()
}

/// A further ADD for a known container: one more interface, on the
/// configuration's network, in the same namespace.
fn connect(
    daemon: &Daemon,
    existing: &Value,
    netns: &Path,
    endpoint: EndpointRequest,
    publish: &[Publish],
    att: &Attach,
) -> Result<Value, CniError> {
    let id = ContainerRef::Id(att.container_id.clone());
    if let Some(iface) = interface(existing, &att.ifname) {
        let same = str_of(iface, "network") == endpoint.network
            && existing["netns"].as_str() == Some(&*netns.to_string_lossy());
        if same && iface["endpoint_id"].as_str() == endpoint.id.as_deref() {
            // A repeated ADD (a runtime retrying): the same answer.
            return Ok(existing.clone());
        }
        return Err(CniError::new(
            code::ALREADY_EXISTS,
            format!(
                "container {} already has interface {} (on netd network {}): DEL it first, or use another CNI_IFNAME",
                att.container_id,
                att.ifname,
                str_of(iface, "network")
            ),
        ));
    }
    let known = existing["netns"].as_str().unwrap_or_default();
    if known != netns.to_string_lossy() {
        return Err(CniError::invalid_env(format!(
            "container {} is attached in namespace {known}, not in CNI_NETNS {}",
            att.container_id,
            netns.display()
        )));
    }
    let container = daemon
        .call(&Request::NetworkConnect {
            container: id.clone(),
            endpoint: endpoint.clone(),
        })
        .map_err(|e| e.to_cni("connecting the container"))?;
    if publish.is_empty() {
        return Ok(container);
    }
    let ip: Option<IpAddr> = interface(&container, &att.ifname)
        .and_then(|i| i["ip"].as_str())
        .and_then(|s| s.parse().ok());
    let published = match ip {
        Some(container_ip) => daemon
            .call(&Request::PortmapAdd {
                mappings: publish
                    .iter()
                    .map(|p| PortMapping {
                        host_ip: p.host_ip,
                        host_ports: p.host_ports,
                        container_ip,
                        container_ports: p.container_ports,
                        proto: p.proto,
                        ipv4_only: p.ipv4_only,
                    })
                    .collect(),
                force: false,
            })
            .map_err(|e| e.to_cni("publishing the ports")),
        None => Err(CniError::new(
            code::PROTOCOL,
            "the daemon's answer has no address for the new interface",
        )),
    };
    if let Err(e) = published {
        // Leave nothing behind: the interface goes again.
        let _ = daemon.call(&Request::NetworkDisconnect {
            container: id,
            endpoint: EndpointRef::Ifname(att.ifname.clone()),
        });
        return Err(e);
    }
    Ok(container)
}

/// The CNI result for one interface of a container (as the daemon
/// renders it).
fn result_of(
    container: &Value,
    ifname: &str,
    networks: &Value,
    netns: &Path,
) -> Result<CniResult, CniError> {
    let iface = interface(container, ifname).ok_or_else(|| {
        CniError::new(
            code::PROTOCOL,
            format!("the daemon's answer has no interface {ifname}"),
        )
    })?;
    let (ip, prefix, gateway) = (
        str_of(iface, "ip"),
        iface["prefix_len"].as_u64().unwrap_or(32),
        str_of(iface, "gateway"),
    );
    let network = str_of(iface, "network");
    let host_veth = str_of(iface, "host_veth");
    let host_mac = sandbox::interface(&host_veth)
        .ok()
        .flatten()
        .and_then(|s| s.mac)
        .map(format_mac)
        .unwrap_or_default();
    let mut result = CniResult {
        interfaces: vec![
            Interface {
                name: host_veth,
                mac: host_mac,
                ..Default::default()
            },
            Interface {
                name: ifname.to_owned(),
                mac: str_of(iface, "mac"),
                sandbox: Some(netns.to_string_lossy().into_owned()),
                ..Default::default()
            },
        ],
        ips: vec![IpConfig {
            address: format!("{ip}/{prefix}"),
            gateway: (!gateway.is_empty()).then(|| gateway.clone()),
            interface: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    };
    // A dual-stack network's second address.
    let v6 = address6(iface);
    if let Some((ip6, prefix6, gateway6)) = &v6 {
        result.ips.push(IpConfig {
            address: format!("{ip6}/{prefix6}"),
            gateway: gateway6.map(|g| g.to_string()),
            interface: Some(1),
            ..Default::default()
        });
    }
    if carries_default_route(container, ifname, networks) {
        result.routes.push(Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(gateway.clone()),
            ..Default::default()
        });
        if let Some((_, _, Some(gateway6))) = v6 {
            result.routes.push(Route {
                dst: "::/0".into(),
                gw: Some(gateway6.to_string()),
                ..Default::default()
            });
        }
    }
    // netd's DNS responder listens on user networks' gateways.
    if network != DEFAULT_NETWORK {
        result.dns = Dns {
            nameservers: vec![gateway],
            ..Default::default()
        };
    }
    Ok(result)
}

/// The IPv6 address, its prefix length and the IPv6 gateway of an
/// interface of the daemon's answer (None: not on a dual-stack network).
fn address6(iface: &Value) -> Option<(Ipv6Addr, u8, Option<Ipv6Addr>)> {
    let ip6 = str_of(iface, "ip6").parse().ok()?;
    let prefix6 = iface["prefix_len6"]
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())?;
    let gateway6 = str_of(iface, "gateway6").parse().ok();
    Some((ip6, prefix6, gateway6))
}

/// Whether the container's default route goes via this interface: the
/// engine puts it on the first interface whose network is not internal.
fn carries_default_route(container: &Value, ifname: &str, networks: &Value) -> bool {
    let first = container["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| network_internal(networks, &str_of(i, "network")) == Some(false));
    first.is_some_and(|i| str_of(i, "name") == ifname)
}

/// Whether `name` is internal; None when `network ls` does not list it.
fn network_internal(networks: &Value, name: &str) -> Option<bool> {
    networks
        .as_array()?
        .iter()
        .find(|n| n["Name"].as_str() == Some(name))
        .map(|n| n["Internal"].as_bool().unwrap_or(false))
}

fn interface<'a>(container: &'a Value, ifname: &str) -> Option<&'a Value> {
    container["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"].as_str() == Some(ifname))
}

fn str_of(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// DEL

/// Removes the attachment; succeeds when it is already gone (or never
/// was), also without `CNI_NETNS`.
pub fn del(conf: &NetConf, att: &Attach) -> Result<(), CniError> {
    let daemon = Daemon::new(conf.socket());
    detach(&daemon, &att.container_id, &att.ifname)
}

/// The container's interface goes; the container with its last one.
fn detach(daemon: &Daemon, container_id: &str, ifname: &str) -> Result<(), CniError> {
    let id = ContainerRef::Id(container_id.to_owned());
    let inspect = || {
        daemon.call(&Request::ContainerInspect {
            container: id.clone(),
        })
    };
    let container = match inspect() {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.to_cni("looking up the container")),
    };
    if interface(&container, ifname).is_none() {
        return Ok(());
    }
    let count = container["interfaces"].as_array().map_or(0, Vec::len);
    let done = if count <= 1 {
        daemon.call(&Request::ContainerRm {
            container: id.clone(),
        })
    } else {
        daemon.call(&Request::NetworkDisconnect {
            container: id.clone(),
            endpoint: EndpointRef::Ifname(ifname.to_owned()),
        })
    };
    match done {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => match inspect() {
            // Gone after all (a disconnect commits before it moves the
            // default route in a namespace that may be gone).
            Err(again) if again.is_not_found() => Ok(()),
            Ok(c) if interface(&c, ifname).is_none() => Ok(()),
            _ => Err(e.to_cni("removing the container's interface")),
        },
    }
}

// ---------------------------------------------------------------------------
// CHECK

pub fn check(conf: &NetConf, version: &str, att: &Attach) -> Result<(), CniError> {
    conf.validate()?;
    if !version_at_least(version, "0.4.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CHECK needs cniVersion 0.4.0 or later, the configuration has {version}"),
        ));
    }
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| {
            CniError::invalid_config(
                "CHECK needs the \"prevResult\" of the ADD: the runtime must pass it",
            )
        })
        .and_then(CniResult::decode)?;
    let netns = att
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is not set"))?;
    let daemon = Daemon::new(conf.socket());
    let failed = |msg: String| CniError::new(code::CHECK_FAILED, msg);
    let container = daemon
        .call(&Request::ContainerInspect {
            container: ContainerRef::Id(att.container_id.clone()),
        })
        .map_err(|e| match e {
            e if e.is_not_found() => CniError::new(
                code::NOT_FOUND,
                format!("netd has no container {}", att.container_id),
            ),
            e => e.to_cni("looking up the container"),
        })?;
    let iface = interface(&container, &att.ifname).ok_or_else(|| {
        CniError::new(
            code::NOT_FOUND,
            format!(
                "container {} has no interface {} in netd",
                att.container_id, att.ifname
            ),
        )
    })?;
    let network = str_of(iface, "network");
    if network != conf.network() {
        return Err(failed(format!(
            "interface {} is on netd network {network}, the configuration names {}",
            att.ifname,
            conf.network()
        )));
    }
    if container["netns"].as_str() != Some(&*netns.to_string_lossy()) {
        return Err(failed(format!(
            "container {} is attached in namespace {}, not in CNI_NETNS {}",
            att.container_id,
            str_of(&container, "netns"),
            netns.display()
        )));
    }
    let status = str_of(&container, "status");
    if status != "running" {
        return Err(failed(format!("container {}: {status}", att.container_id)));
    }
    let ip: IpAddr = str_of(iface, "ip")
        .parse()
        .map_err(|_| CniError::new(code::PROTOCOL, "the daemon's answer has no address"))?;
    let prefix = iface["prefix_len"].as_u64().unwrap_or(32) as u8;
    let gateway = str_of(iface, "gateway");
    let look = sandbox::look(netns, &att.ifname)
        .map_err(|e| CniError::new(code::IO, format!("looking into {}: {e}", netns.display())))?;
    let Some(seen) = look.iface else {
        return Err(failed(format!(
            "interface {} is missing in {}",
            att.ifname,
            netns.display()
        )));
    };
    let v6 = address6(iface);
    let mut addresses = vec![(ip, prefix)];
    addresses.extend(v6.map(|(ip6, prefix6, _)| (IpAddr::V6(ip6), prefix6)));
    for (ip, prefix) in &addresses {
        if !seen.addrs.contains(&(*ip, *prefix)) {
            return Err(failed(format!(
                "interface {} in {} lacks its address {ip}/{prefix}",
                att.ifname,
                netns.display()
            )));
        }
    }
    if !seen.up {
        return Err(failed(format!("interface {} is down", att.ifname)));
    }
    let mac = str_of(iface, "mac");
    if seen.mac.map(format_mac).as_deref() != Some(mac.as_str()) {
        return Err(failed(format!(
            "interface {} has another MAC address than its endpoint's {mac}",
            att.ifname
        )));
    }
    let networks = daemon
        .call(&Request::NetworkLs)
        .map_err(|e| e.to_cni("listing netd's networks"))?;
    if carries_default_route(&container, &att.ifname, &networks) {
        if look.gateway.map(|g| g.to_string()) != Some(gateway.clone()) {
            return Err(failed(format!(
                "the default route in {} does not go via {gateway}",
                netns.display()
            )));
        }
        if let Some((_, _, Some(gateway6))) = v6
            && !look.gateways6.contains(&gateway6)
        {
            return Err(failed(format!(
                "the IPv6 default route in {} does not go via {gateway6}",
                netns.display()
            )));
        }
    }
    for (ip, prefix) in &addresses {
        let address = format!("{ip}/{prefix}");
        if !prev.ips.iter().any(|i| i.address == address) {
            return Err(failed(format!(
                "prevResult does not list {address}, the address netd gave {}",
                att.ifname
            )));
        }
    }
    check_ports(&daemon, conf, &att.container_id, ip)
}

/// Every mapping of `runtimeConfig.portMappings` is still published.
fn check_ports(daemon: &Daemon, conf: &NetConf, id: &str, ip: IpAddr) -> Result<(), CniError> {
    let wanted = publishes(conf)?;
    if wanted.is_empty() {
        return Ok(());
    }
    let list = daemon
        .call(&Request::PortmapLs)
        .map_err(|e| e.to_cni("listing published ports"))?;
    let published: Vec<&Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["container_id"].as_str() == Some(id))
        .collect();
    for p in wanted {
        let present = published.iter().any(|m| {
            m["host_port"].as_str() == Some(&*p.host_ports.to_string())
                && m["container_port"].as_str() == Some(&*p.container_ports.to_string())
                && m["proto"].as_str() == Some(&*p.proto.to_string())
                && m["container_ip"].as_str() == Some(&*ip.to_string())
                && m["host_ip"].as_str() == Some(&*p.host_ip.to_string())
        });
        if !present {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "host port {}/{} is not published to {ip}:{} any more",
                    p.host_ports, p.proto, p.container_ports
                ),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// STATUS and GC

/// Ready for ADDs: the daemon answers and the network exists (code 50
/// otherwise).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let daemon = Daemon::new(conf.socket());
    let unavailable = |msg: String| CniError::new(code::NOT_AVAILABLE, msg);
    let networks = daemon
        .call(&Request::Status)
        .and_then(|_| daemon.call(&Request::NetworkLs))
        .map_err(|e| unavailable(e.to_cni("asking the netd daemon").msg))?;
    let network = conf.network();
    if network_internal(&networks, network).is_none() {
        return Err(unavailable(format!(
            "netd network {network} does not exist: create it with `netd network create {network}`"
        )));
    }
    Ok(())
}

/// Removes this configuration's attachments that the runtime does not
/// list as valid.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    if conf_name(conf).is_empty() {
        return Err(CniError::invalid_config(
            "the network configuration has no \"name\": add one",
        ));
    }
    let valid: BTreeSet<(String, String)> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let daemon = Daemon::new(conf.socket());
    let containers = daemon
        .call(&Request::ContainerLs)
        .map_err(|e| e.to_cni("listing netd's containers"))?;
    let prefix = endpoint_prefix(conf_name(conf));
    let mut first_error = None;
    for c in containers.as_array().into_iter().flatten() {
        let id = str_of(c, "id");
        let stale: Vec<String> = c["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| {
                i["endpoint_id"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(&prefix))
            })
            .map(|i| str_of(i, "name"))
            .filter(|ifname| !valid.contains(&(id.clone(), ifname.clone())))
            .collect();
        for ifname in stale {
            if let Err(e) = detach(&daemon, &id, &ifname) {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(args: &str, id: &str) -> Attach {
        Attach {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: None,
            args: super::super::env::parse_args(args).unwrap(),
        }
    }

    #[test]
    fn names_follow_the_runtime() {
        let id = "0123456789abcdef0123";
        assert_eq!(
            name_candidates(&att("IgnoreUnknown=1;K8S_POD_NAME=web", id)),
            ["web", "web-0123456789ab", "0123456789ab", id]
        );
        assert_eq!(
            name_candidates(&att("K8S_POD_NAME=_my pod!", id))[0],
            "my-pod-"
        );
        assert_eq!(name_candidates(&att("", id))[0], "0123456789ab");
    }

    #[test]
    fn ports_become_publishes() {
        let conf = NetConf::decode(
            br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[
                {"hostPort":8088,"containerPort":80,"protocol":"tcp"},
                {"hostPort":53,"containerPort":53,"protocol":"UDP","hostIP":"198.18.0.1"}]}}"#,
        )
        .unwrap();
        let p = publishes(&conf).unwrap();
        assert_eq!(p[0].proto, Proto::Tcp);
        assert!(p[0].host_ip.is_unspecified());
        assert_eq!(p[1].proto, Proto::Udp);
        assert_eq!(p[1].host_ip.to_string(), "198.18.0.1");
        let sctp = NetConf::decode(
            br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[
                {"hostPort":1,"containerPort":1,"protocol":"sctp"}]}}"#,
        )
        .unwrap();
        assert_eq!(publishes(&sctp).unwrap_err().code, code::INVALID_CONFIG);
        // As the reference portmap plugin: "" is both families, 0.0.0.0
        // IPv4 only, :: IPv6 only; listed once per family, one mapping on
        // every address.
        let with_host_ips = |ips: &[&str]| {
            let list: Vec<String> = ips
                .iter()
                .map(|ip| format!(r#"{{"hostPort":8088,"containerPort":80,"hostIP":"{ip}"}}"#))
                .collect();
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","runtimeConfig":{{"portMappings":[{}]}}}}"#,
                list.join(",")
            );
            let p = publishes(&NetConf::decode(conf.as_bytes()).unwrap()).unwrap();
            assert_eq!(p.len(), 1, "{ips:?}: {p:?}");
            (p[0].host_ip.to_string(), p[0].ipv4_only)
        };
        let both = ("0.0.0.0".to_owned(), false);
        assert_eq!(with_host_ips(&[""]), both);
        assert_eq!(with_host_ips(&["0.0.0.0"]), ("0.0.0.0".into(), true));
        assert_eq!(with_host_ips(&["::"]), ("::".into(), false));
        assert_eq!(with_host_ips(&["0.0.0.0", "::"]), both);
        assert_eq!(with_host_ips(&["::", "0.0.0.0"]), both);
        assert_eq!(with_host_ips(&["", "::"]), both);
        assert_eq!(with_host_ips(&["0.0.0.0", ""]), both);
        assert_eq!(with_host_ips(&["::", "::"]), ("::".into(), false));
        let one6 = NetConf::decode(
            br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":[
                {"hostPort":8088,"containerPort":80,"hostIP":"2001:2::1"}]}}"#,
        )
        .unwrap();
        // One IPv6 host address: that address only.
        let p = publishes(&one6).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].host_ip.to_string(), "2001:2::1");
        assert!(!p[0].ipv4_only);
    }

    #[test]
    fn static_addresses_one_of_each_family() {
        let conf = |ips: &str| {
            NetConf::decode(
                format!(r#"{{"cniVersion":"1.0.0","name":"n","runtimeConfig":{{"ips":{ips}}}}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let none = att("", "c");
        assert_eq!(
            static_ips(&conf(r#"["fd00:1::9/64", "10.1.0.9/24"]"#), &none).unwrap(),
            (ip("10.1.0.9"), ip("fd00:1::9"))
        );
        assert_eq!(
            static_ips(&conf("[]"), &att("IP=10.1.0.8,fd00:1::8", "c")).unwrap(),
            (ip("10.1.0.8"), ip("fd00:1::8"))
        );
        assert_eq!(
            static_ips(&conf(r#"["fd00:1::9"]"#), &none).unwrap(),
            (None, ip("fd00:1::9"))
        );
        let two = static_ips(&conf(r#"["fd00:1::9", "fd00:1::a"]"#), &none).unwrap_err();
        assert_eq!(two.code, code::INVALID_CONFIG);
    }

    #[test]
    fn result_from_the_daemons_answer() {
        let container = serde_json::json!({
            "id": "abc", "netns": "/run/netns/x",
            "interfaces": [
                {"name": "eth0", "network": "internal1", "ip": "10.9.0.2", "prefix_len": 24,
                 "gateway": "10.9.0.1", "mac": "02:42:0a:09:00:02", "host_veth": "vethno1"},
                {"name": "eth1", "network": "app", "ip": "172.18.0.2", "prefix_len": 16,
                 "gateway": "172.18.0.1", "mac": "02:42:ac:12:00:02", "host_veth": "vethno2"},
            ]
        });
        let networks = serde_json::json!([
            {"Name": "internal1", "Internal": true},
            {"Name": "app", "Internal": false},
        ]);
        let r = result_of(&container, "eth1", &networks, Path::new("/run/netns/x")).unwrap();
        assert_eq!(r.ips[0].address, "172.18.0.2/16");
        assert_eq!(r.ips[0].interface, Some(1));
        assert_eq!(r.interfaces[1].sandbox.as_deref(), Some("/run/netns/x"));
        assert_eq!(r.routes[0].gw.as_deref(), Some("172.18.0.1"));
        assert_eq!(r.dns.nameservers, ["172.18.0.1"]);
        let r = result_of(&container, "eth0", &networks, Path::new("/run/netns/x")).unwrap();
        assert!(
            r.routes.is_empty(),
            "internal networks get no default route"
        );
    }

    #[test]
    fn dual_stack_results_carry_both_addresses_and_routes() {
        let container = serde_json::json!({
            "id": "abc", "netns": "/run/netns/x",
            "interfaces": [
                {"name": "eth0", "network": "app", "ip": "172.18.0.2", "prefix_len": 16,
                 "gateway": "172.18.0.1", "ip6": "fd00:1::2", "prefix_len6": 64,
                 "gateway6": "fd00:1::1", "mac": "02:42:ac:12:00:02", "host_veth": "vethno2"},
            ]
        });
        let networks = serde_json::json!([{"Name": "app", "Internal": false}]);
        let r = result_of(&container, "eth0", &networks, Path::new("/run/netns/x")).unwrap();
        let ips: Vec<(&str, Option<&str>, Option<usize>)> = r
            .ips
            .iter()
            .map(|i| (i.address.as_str(), i.gateway.as_deref(), i.interface))
            .collect();
        assert_eq!(
            ips,
            [
                ("172.18.0.2/16", Some("172.18.0.1"), Some(1)),
                ("fd00:1::2/64", Some("fd00:1::1"), Some(1))
            ]
        );
        let routes: Vec<(&str, Option<&str>)> = r
            .routes
            .iter()
            .map(|r| (r.dst.as_str(), r.gw.as_deref()))
            .collect();
        assert_eq!(
            routes,
            [
                ("0.0.0.0/0", Some("172.18.0.1")),
                ("::/0", Some("fd00:1::1"))
            ]
        );
        let old = serde_json::to_value(r.in_version("0.3.1")).unwrap();
        assert_eq!(old["ips"][1]["version"], "6");
    }
}
