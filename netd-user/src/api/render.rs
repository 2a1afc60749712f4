//! What the socket API answers: the engine's records rendered as JSON, in
//! Docker's shapes where Docker has one (`network inspect`), and engine
//! errors phrased for netd's CLI.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use netd_common::{Counter, StatIndex};
use serde_json::{Map, Value, json};

use crate::engine::{
    error::{Error, Remedy},
    model::{Container, GatewayMode, Network, PortMap, Sandbox},
};

/// The engine's message with its remedy in CLI terms.
pub fn error_line(e: &Error) -> String {
    let hint = match e.remedy {
        None => "",
        Some(Remedy::ListContainers) => " (see `netd container ls`)",
        Some(Remedy::ListNetworks) => " (see `netd network ls`)",
        Some(Remedy::ListPortmaps) => " (see `netd portmap ls`)",
        Some(Remedy::AdoptBridge) => " (--adopt-bridge)",
        Some(Remedy::ForcePublish) => " (--force-publish, or `portmap add --force`)",
        Some(Remedy::GrowAddressPools) => {
            " (--subnet, or start the daemon with a larger --default-address-pool base=CIDR,size=N)"
        }
    };
    format!("{}{hint}", e.message)
}

/// One container, as `container inspect` prints it. Top-level address
/// fields are those of eth0 (empty without a network).
pub fn container(
    c: &Container,
    problem: Option<String>,
    netns: Option<&Path>,
    networks: &BTreeMap<String, Network>,
    names_dir: &Path,
) -> Value {
    let interfaces: Vec<Value> = c
        .endpoints
        .iter()
        .map(|ep| {
            let net = networks.get(&ep.network);
            json!({
                "name": ep.ifname,
                "network": ep.network,
                "ip": ep.ip,
                "prefix_len": net.map(|n| n.subnet.prefix()),
                "gateway": net.map(|n| n.gateway),
                "ip6": ep.ip6,
                "prefix_len6": net.and_then(|n| n.subnet6).map(|s| s.prefix()),
                "gateway6": net.and_then(|n| n.gateway6),
                "mac": ep.mac,
                "host_veth": ep.host_veth,
                "host_ifindex": ep.host_ifindex,
                "endpoint_id": ep.id,
            })
        })
        .collect();
    let primary = interfaces.first().cloned().unwrap_or(Value::Null);
    let field = |key: &str| primary.get(key).cloned().unwrap_or(Value::Null);
    let mode = c.sandbox.mode_name();
    json!({
        "id": c.id.0,
        "name": c.name,
        "status": problem.unwrap_or_else(|| "running".into()),
        "mode": mode,
        "netns": netns,
        "netns_owner": match &c.sandbox {
            Sandbox::Netns { owner, .. } => json!(owner),
            Sandbox::Isolated { .. } => json!("netd"),
            _ => Value::Null,
        },
        "network": primary.get("network").cloned().unwrap_or(Value::String(mode)),
        "ip": field("ip"),
        "prefix_len": field("prefix_len"),
        "mac": field("mac"),
        "gateway": field("gateway"),
        "ip6": field("ip6"),
        "prefix_len6": field("prefix_len6"),
        "gateway6": field("gateway6"),
        "host_veth": field("host_veth"),
        "host_ifindex": field("host_ifindex"),
        "interfaces": interfaces,
        "hostname": c.names.hostname,
        "hosts_path": names_dir.join("hosts"),
        "resolv_conf_path": names_dir.join("resolv.conf"),
    })
}

/// `network ls`: the networks plus Docker's pseudo-networks.
pub fn network_list(networks: &[Network], pseudo: &[(&str, &str)]) -> Value {
    let mut out: Vec<Value> = networks
        .iter()
        .map(|n| {
            let mut row = json!({"Name": n.name, "Id": n.id, "Driver": n.driver, "Scope": "local",
                   "Subnet": n.subnet.to_string(), "Internal": n.internal});
            // Dual-stack networks only, so IPv4 rows keep their shape.
            if let Some(subnet6) = n.subnet6 {
                row["Subnet6"] = subnet6.to_string().into();
            }
            row
        })
        .collect();
    for (name, driver) in pseudo {
        out.push(json!({"Name": name, "Id": name, "Driver": driver, "Scope": "local", "Subnet": "", "Internal": false}));
    }
    Value::Array(out)
}

/// `network inspect`, in the shape of `docker network inspect`.
pub fn network_inspect(net: &Network, containers: &[Container]) -> Value {
    let mut members = Map::new();
    for c in containers {
        if let Some(ep) = c.endpoint_on(&net.name) {
            members.insert(
                c.id.0.clone(),
                json!({
                    "Name": c.name,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, net.subnet.prefix()),
                    "IPv6Address": match (ep.ip6, net.subnet6) {
                        (Some(ip6), Some(subnet6)) => format!("{ip6}/{}", subnet6.prefix()),
                        _ => String::new(),
                    },
                }),
            );
        }
    }
    // As Docker's, the options show what was set: the gateway mode only
    // when it is not the default.
    let mut options = json!({"com.docker.network.bridge.name": net.bridge});
    if net.gateway_mode != GatewayMode::Nat {
        options["com.docker.network.bridge.gateway_mode_ipv4"] = net.gateway_mode.as_str().into();
    }
    let mut config =
        vec![json!({"Subnet": net.subnet.to_string(), "Gateway": net.gateway.to_string()})];
    if let (Some(subnet6), Some(gateway6)) = (net.subnet6, net.gateway6) {
        config.push(json!({"Subnet": subnet6.to_string(), "Gateway": gateway6.to_string()}));
    }
    json!({
        "Name": net.name,
        "Id": net.id,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": net.ipv6(),
        "IPAM": {
            "Driver": "default",
            "Config": config,
        },
        "Internal": net.internal,
        "Containers": members,
        "Options": options,
    })
}

/// `network inspect host|none`: the containers in that mode, which have
/// no addresses of their own on it.
pub fn pseudo_network_inspect(name: &str, driver: &str, containers: &[Container]) -> Value {
    let mut members = Map::new();
    for c in containers {
        let member = matches!(
            (name, &c.sandbox),
            ("host", Sandbox::Host) | ("none", Sandbox::Isolated { .. })
        );
        if member {
            members.insert(
                c.id.0.clone(),
                json!({"Name": c.name, "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}),
            );
        }
    }
    // The Id is the one `network ls` shows.
    json!({
        "Name": name,
        "Id": name,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": []},
        "Internal": false,
        "Containers": members,
        "Options": {},
    })
}

/// Published ports, with their container's name and id, and what each
/// family binds: `host_ips` the host addresses (0.0.0.0 and :: for a
/// mapping on every address of a dual-stack container), `container_ip6`
/// the address the IPv6 side reaches (`ip6s`: container IPv4 address to
/// IPv6 one).
pub fn portmaps(
    records: &[PortMap],
    containers: &BTreeMap<String, String>,
    ip6s: &BTreeMap<IpAddr, IpAddr>,
) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                let m = &r.mapping;
                let (v4, v6) = m.host_binds();
                let ip6 = ip6s.get(&m.container_ip).copied();
                let v6 = v6.filter(|_| ip6.is_some());
                let host_ips: Vec<IpAddr> = v4.into_iter().chain(v6).collect();
                json!({
                    "spec": m.to_string(),
                    "host_ip": m.host_ip,
                    "host_ips": host_ips,
                    "container_ip6": v6.and(ip6),
                    "host_port": m.host_ports.to_string(),
                    "container_ip": m.container_ip,
                    "container_port": m.container_ports.to_string(),
                    "proto": m.proto,
                    "container": containers.get(&r.container.0).cloned().unwrap_or_default(),
                    "container_id": r.container.0,
                })
            })
            .collect(),
    )
}

/// `stats`: every counter by name.
pub fn stats(counters: &[(StatIndex, Counter)]) -> Value {
    let mut out = Map::new();
    for (index, counter) in counters {
        out.insert(
            index.name().into(),
            json!({ "packets": counter.packets, "bytes": counter.bytes }),
        );
    }
    Value::Object(out)
}
