//! What Docker's messages mean in netd's terms, as pure functions:
//! `docker network create` options into a `NetworkCreate`, and
//! `com.docker.network.portmap` into port mappings.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::wire::{CreateNetwork, Options, PortBinding};
use crate::engine::{
    model::{ANY_V4, GatewayMode, PortRange, Proto},
    requests::{NetworkCreate, Publish, merge_family_wildcards},
};

/// `-o` options (`com.docker.network.generic`) netd honours.
pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const GATEWAY_MODE: &str = "com.docker.network.bridge.gateway_mode_ipv4";
/// netd's own: use an existing bridge (`-o com.docker.network.bridge.name=br0
/// -o netd.adopt_bridge=true`).
pub const ADOPT_BRIDGE: &str = "netd.adopt_bridge";
/// Options Docker's bridge driver takes that are netd's behaviour anyway.
const HARMLESS: [(&str, &str); 3] = [
    ("com.docker.network.bridge.enable_icc", "true"),
    ("com.docker.network.bridge.enable_ip_masquerade", "true"),
    ("com.docker.network.driver.mtu", "1500"),
];

pub const GENERIC: &str = "com.docker.network.generic";
pub const INTERNAL: &str = "com.docker.network.internal";
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
pub const PORTMAP: &str = "com.docker.network.portmap";

/// The netd network name of a Docker network (Docker sends only its id).
pub fn network_name(docker_id: &str) -> String {
    format!("docker-{}", short(docker_id))
}

/// The netd container name of a Docker endpoint.
pub fn endpoint_name(endpoint_id: &str) -> String {
    format!("docker-{}", short(endpoint_id))
}

pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true" || s == "1",
        _ => false,
    }
}

/// A CIDR as Docker writes pools and gateways.
fn cidr(what: &str, s: &str) -> Result<IpNetwork, String> {
    s.parse()
        .map_err(|_| format!("netd: {what} {s:?} is not an address in CIDR form"))
}

/// `CreateNetwork` as a netd network request.
pub fn network_request(req: &CreateNetwork) -> Result<NetworkCreate, String> {
    if req.network_id.is_empty() {
        return Err("netd: CreateNetwork without a NetworkID".into());
    }
    let empty = Options::new();
    let options = req.options.as_ref().unwrap_or(&empty);
    let v6 = match req.ipv6_data.as_deref().unwrap_or_default() {
        [] if options.get(ENABLE_IPV6).is_some_and(is_true) => {
            return Err(
                "netd: --ipv6 but the IPAM driver gave the network no IPv6 pool: add an IPv6 --subnet (e.g. fd00:1::/64) or use --ipam-driver netd"
                    .into(),
            );
        }
        [] => None,
        [one] => Some(one),
        _ => {
            return Err(
                "netd networks have one IPv6 subnet: give docker network create one IPv6 --subnet"
                    .into(),
            );
        }
    };
    let v4 = req.ipv4_data.as_deref().unwrap_or_default();
    let data = match v4 {
        [] => {
            return Err(
                "netd: the network has no IPv4 pool: give it a --subnet or use --ipam-driver netd"
                    .into(),
            );
        }
        [one] => one,
        _ => {
            return Err(
                "netd networks have one IPv4 subnet: give docker network create one --subnet"
                    .into(),
            );
        }
    };
    if [Some(data), v6]
        .into_iter()
        .flatten()
        .any(|d| d.aux_addresses.as_ref().is_some_and(|a| !a.is_empty()))
    {
        return Err(
            "netd does not reserve auxiliary addresses (--aux-address): create the network without them"
                .into(),
        );
    }
    let subnet = cidr("pool", &data.pool)?;
    let gateway = match data.gateway.as_str() {
        "" => None,
        gw => Some(cidr("gateway", gw)?.ip()),
    };
    let (subnet6, gateway6) = match v6 {
        None => (None, None),
        Some(d) => {
            let subnet6 = cidr("IPv6 pool", &d.pool)?;
            if subnet6.is_ipv4() {
                return Err(format!(
                    "netd: the IPv6 pool {subnet6} is an IPv4 subnet: give an IPv6 --subnet"
                ));
            }
            let gateway6 = match d.gateway.as_str() {
                "" => None,
                gw => Some(cidr("IPv6 gateway", gw)?.ip()),
            };
            (Some(subnet6), gateway6)
        }
    };
    let mut create = NetworkCreate {
        name: network_name(&req.network_id),
        id: Some(req.network_id.clone()),
        subnet: Some(subnet),
        gateway,
        ipv6: subnet6.is_some(),
        subnet6,
        gateway6,
        internal: options.get(INTERNAL).is_some_and(is_true),
        ..NetworkCreate::default()
    };
    if let Some(generic) = options.get(GENERIC).and_then(Value::as_object) {
        for (key, value) in generic {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match key.as_str() {
                BRIDGE_NAME => create.bridge = Some(text),
                GATEWAY_MODE => {
                    create.gateway_mode = match text.as_str() {
                        "nat" => GatewayMode::Nat,
                        "routed" => GatewayMode::Routed,
                        other => {
                            return Err(format!(
                                "netd: {GATEWAY_MODE}={other} is not a gateway mode: use nat or routed"
                            ));
                        }
                    }
                }
                ADOPT_BRIDGE => create.adopt_bridge = is_true(value),
                other if HARMLESS.iter().any(|(k, v)| *k == other && *v == text) => {}
                other => {
                    return Err(format!(
                        "netd does not support the network option {other}={text}: netd takes {BRIDGE_NAME}, {GATEWAY_MODE} (nat|routed) and {ADOPT_BRIDGE}"
                    ));
                }
            }
        }
    }
    Ok(create)
}

/// The port bindings of an endpoint's options (none when absent).
pub fn port_bindings(options: Option<&Options>) -> Result<Vec<PortBinding>, String> {
    match options.and_then(|o| o.get(PORTMAP)) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("netd: unreadable {PORTMAP}: {e}")),
    }
}

/// What to publish for Docker's bindings: `fixed` all at once; each of
/// `pick_one` is a host port range of which any one port will do
/// (`-p 8000-8010:80`), tried in order. A mapping on every host address
/// is published on IPv6 too when the endpoint has an IPv6 address.
#[derive(Debug, Default, PartialEq)]
pub struct Publishing {
    pub fixed: Vec<Publish>,
    pub pick_one: Vec<Publish>,
}

pub fn publishing(bindings: &[PortBinding]) -> Result<Publishing, String> {
    let mut out = Publishing::default();
    // Docker's (moby's bridge driver's) meaning of a binding's HostIP: none
    // is every host address of both families; 0.0.0.0 given as such, IPv4
    // only; `::`, IPv6 only; any other address, that one. A 0.0.0.0 and a
    // `::` binding of the same ports together are both families
    // (`merge_family_wildcards`, once the bindings are mappings).
    let mut bindings = bindings.to_vec();
    // Docker lists a range's ports in any order.
    bindings.sort_by_key(|b| {
        (
            b.proto,
            b.host_ip.clone(),
            b.host_port == 0,
            b.host_port,
            b.port,
        )
    });
    bindings.dedup();
    for b in &bindings {
        let proto = match b.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => return Err("netd does not publish SCTP ports: publish tcp or udp".into()),
            n => {
                return Err(format!(
                    "netd: unknown protocol number {n} in a port binding"
                ));
            }
        };
        let host_ip: IpAddr = match b.host_ip.as_str() {
            "" => ANY_V4,
            s => s.parse().map_err(|_| {
                format!("netd: host address {s:?} of a port binding is not an address")
            })?,
        };
        let ipv4_only = !b.host_ip.is_empty() && host_ip == ANY_V4;
        if b.port == 0 {
            return Err("netd: a port binding without a container port".into());
        }
        let container = PortRange::single(b.port);
        let publish = |host_ports| Publish {
            host_ip,
            host_ports,
            container_ports: container,
            proto,
            ipv4_only,
        };
        if b.host_port != 0 && b.host_port_end > b.host_port {
            out.pick_one.push(publish(PortRange {
                start: b.host_port,
                end: b.host_port_end,
            }));
            continue;
        }
        // Consecutive bindings (a range, `-p 9000-9001:9000-9001`) become
        // one mapping; host port 0 (`-p 80`) stays alone, netd picks it.
        if b.host_port != 0
            && let Some(last) = out.fixed.last_mut()
            && last.proto == proto
            && last.host_ip == host_ip
            && last.ipv4_only == ipv4_only
            && last.host_ports.start != 0
            && u32::from(last.host_ports.end) + 1 == u32::from(b.host_port)
            && u32::from(last.container_ports.end) + 1 == u32::from(b.port)
        {
            last.host_ports.end = b.host_port;
            last.container_ports.end = b.port;
            continue;
        }
        out.fixed.push(publish(PortRange::single(b.host_port)));
    }
    Ok(Publishing {
        fixed: merge_family_wildcards(out.fixed),
        pick_one: merge_family_wildcards(out.pick_one),
    })
}

/// Docker's view of a published mapping (EndpointOperInfo), one binding
/// per port.
pub fn bindings_of(m: &crate::engine::model::PortMapping) -> Vec<PortBinding> {
    (0..m.host_ports.count())
        .map(|i| {
            let i = i as u16;
            PortBinding {
                proto: m.proto.number(),
                ip: m.container_ip.to_string(),
                port: m.container_ports.start + i,
                host_ip: if m.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && !m.ipv4_only {
                    String::new()
                } else {
                    m.host_ip.to_string()
                },
                host_port: m.host_ports.start + i,
                host_port_end: m.host_ports.start + i,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn create(v: Value) -> Result<NetworkCreate, String> {
        network_request(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn create_network_maps_pool_gateway_and_options() {
        let req = create(json!({
            "NetworkID": "0123456789abcdef",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.internal": true,
                "com.docker.network.generic": {
                    "com.docker.network.bridge.name": "brx",
                    "com.docker.network.bridge.gateway_mode_ipv4": "nat"
                }
            },
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.29.0.0/16", "Gateway": "172.29.0.1/16"}],
            "IPv6Data": []
        }))
        .unwrap();
        assert_eq!(req.name, "docker-0123456789ab");
        assert_eq!(req.id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(req.subnet.unwrap().to_string(), "172.29.0.0/16");
        assert_eq!(req.gateway.unwrap().to_string(), "172.29.0.1");
        assert!(req.internal);
        assert_eq!(req.bridge.as_deref(), Some("brx"));
    }

    #[test]
    fn create_network_refuses_what_netd_cannot_do() {
        let base = |extra: Value| {
            let mut v = json!({"NetworkID": "n1", "IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.1.0.1/24"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            create(v)
        };
        assert!(base(json!({})).is_ok());
        let v6 = base(json!({"IPv6Data": [{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]}))
            .unwrap();
        assert!(v6.ipv6);
        assert_eq!(v6.subnet6.unwrap().to_string(), "fd00:1::/64");
        assert_eq!(v6.gateway6.unwrap().to_string(), "fd00:1::1");
        let no_pool =
            base(json!({"Options": {"com.docker.network.enable_ipv6": true}})).unwrap_err();
        assert!(no_pool.contains("no IPv6 pool"), "{no_pool}");
        let two = base(json!({"IPv6Data": [{"Pool": "fd00:1::/64"}, {"Pool": "fd00:2::/64"}]}))
            .unwrap_err();
        assert!(two.contains("one IPv6 subnet"), "{two}");
        let wrong = base(json!({"IPv6Data": [{"Pool": "10.2.0.0/24"}]})).unwrap_err();
        assert!(wrong.contains("IPv4 subnet"), "{wrong}");
        let aux = base(
            json!({"IPv6Data": [{"Pool": "fd00:1::/64", "AuxAddresses": {"a": "fd00:1::9"}}]}),
        )
        .unwrap_err();
        assert!(aux.contains("aux"), "{aux}");
        let opt = base(json!({"Options": {"com.docker.network.generic": {"com.docker.network.bridge.enable_icc": "false"}}})).unwrap_err();
        assert!(opt.contains("enable_icc=false"), "{opt}");
        let ok = base(
            json!({"Options": {"com.docker.network.generic": {"com.docker.network.bridge.enable_icc": "true"}}}),
        );
        assert!(ok.is_ok());
        assert!(create(json!({"NetworkID": "n1"})).is_err());
    }

    fn b(proto: u8, host_ip: &str, port: u16, host: u16, host_end: u16) -> PortBinding {
        PortBinding {
            proto,
            ip: String::new(),
            port,
            host_ip: host_ip.into(),
            host_port: host,
            host_port_end: host_end,
        }
    }

    #[test]
    fn bindings_become_mappings() {
        let p = publishing(&[
            b(6, "", 80, 8080, 8080),
            b(17, "", 9001, 9001, 9001),
            b(17, "", 9000, 9000, 9000),
            b(6, "", 80, 0, 0),
            b(6, "", 81, 0, 0),
            b(6, "::", 80, 8080, 8080),
            b(6, "127.0.0.1", 443, 8000, 8010),
        ])
        .unwrap();
        let shown: Vec<String> = p
            .fixed
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    p.host_ip, p.host_ports, p.container_ports, p.proto
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "0.0.0.0:8080->80/tcp",
                "0.0.0.0:0->80/tcp",
                "0.0.0.0:0->81/tcp",
                "0.0.0.0:9000-9001->9000-9001/udp",
            ]
        );
        assert_eq!(p.pick_one.len(), 1);
        assert_eq!(
            p.pick_one[0].host_ports,
            PortRange {
                start: 8000,
                end: 8010
            }
        );
        assert!(publishing(&[b(132, "", 1, 1, 1)]).is_err());
        // As Docker means them: `::` alone is IPv6 only, 0.0.0.0 alone IPv4
        // only, both together every address of both families; one IPv6
        // address is that address.
        let one = |bs: &[PortBinding]| {
            let p = publishing(bs).unwrap();
            assert_eq!(p.fixed.len(), 1, "{p:?}");
            let f = &p.fixed[0];
            (f.host_ip.to_string(), f.ipv4_only)
        };
        let any6 = b(6, "::", 80, 8080, 8080);
        let any4 = b(6, "0.0.0.0", 80, 8080, 8080);
        assert_eq!(one(std::slice::from_ref(&any6)), ("::".into(), false));
        assert_eq!(one(std::slice::from_ref(&any4)), ("0.0.0.0".into(), true));
        assert_eq!(one(&[any4, any6]), ("0.0.0.0".into(), false));
        // A range per family (`-p 9000-9001:9000-9001` on a dual-stack
        // Docker): one range on both.
        let range = [
            b(6, "::", 9001, 9001, 9001),
            b(6, "0.0.0.0", 9000, 9000, 9000),
            b(6, "::", 9000, 9000, 9000),
            b(6, "0.0.0.0", 9001, 9001, 9001),
        ];
        assert_eq!(one(&range), ("0.0.0.0".into(), false));
        assert_eq!(publishing(&range).unwrap().fixed[0].host_ports.count(), 2);
        assert_eq!(
            one(&[b(6, "2001:2::1", 80, 8080, 8080)]),
            ("2001:2::1".into(), false)
        );
    }
}
