//! `NetworkDriver.*`: networks, endpoints, joins and published ports.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use tracing::info;

use super::{
    Answer, Failure,
    options::{self, endpoint_name, port_bindings, publishing},
    parse, wire,
};
use crate::engine::{
    Engine,
    error::ErrorKind,
    ipam::{format_mac, mac_for},
    model::{Placement, PortMapping},
    requests::{
        ContainerAdd, ContainerRef, EndpointRequest, PortSelector, Publish, SandboxRequest,
    },
};

pub(super) async fn call(engine: &Engine, method: &str, body: &[u8]) -> Answer {
    match method {
        "NetworkDriver.GetCapabilities" => {
            Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
        }
        "NetworkDriver.CreateNetwork" => create_network(engine, parse(body)?).await,
        "NetworkDriver.DeleteNetwork" => delete_network(engine, parse(body)?).await,
        "NetworkDriver.CreateEndpoint" => create_endpoint(engine, parse(body)?).await,
        "NetworkDriver.DeleteEndpoint" => delete_endpoint(engine, parse(body)?).await,
        "NetworkDriver.EndpointOperInfo" => oper_info(engine, parse(body)?),
        "NetworkDriver.Join" => join(engine, parse(body)?).await,
        "NetworkDriver.Leave" => leave(engine, parse(body)?).await,
        "NetworkDriver.ProgramExternalConnectivity" => program(engine, parse(body)?).await,
        "NetworkDriver.RevokeExternalConnectivity" => revoke(engine, parse(body)?).await,
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
        other => Err(Failure::Unknown(other.into())),
    }
}

async fn create_network(engine: &Engine, req: wire::CreateNetwork) -> Answer {
    // Docker may retry a call whose answer it missed.
    if engine.network_by_id(&req.network_id).is_ok() {
        return Ok(json!({}));
    }
    let create = options::network_request(&req)?;
    let net = engine.create_network(create).await?;
    info!(network = %net.name, docker_network = %req.network_id, subnet = %net.subnet, "Docker network created");
    Ok(json!({}))
}

async fn delete_network(engine: &Engine, req: wire::NetworkRef) -> Answer {
    let Ok(net) = engine.network_by_id(&req.network_id) else {
        return Ok(json!({}));
    };
    engine.remove_network(&net.name).await?;
    Ok(json!({}))
}

async fn create_endpoint(engine: &Engine, req: wire::CreateEndpoint) -> Answer {
    if req.endpoint_id.is_empty() {
        return Err(Failure::Err(
            "netd: CreateEndpoint without an EndpointID".into(),
        ));
    }
    let net = engine.network_by_id(&req.network_id)?;
    let iface = req.interface.unwrap_or_default();
    let cidr_ip = |what: &str, s: &str| {
        s.parse::<IpNetwork>()
            .map(|n| n.ip())
            .map_err(|_| Failure::Err(format!("netd: endpoint {what} {s:?} is not in CIDR form")))
    };
    let ip = match iface.address.as_str() {
        "" => {
            return Err(Failure::Err(
                "netd: Docker gave the endpoint no IPv4 address: use an IPAM driver that does (the default, or netd)".into(),
            ));
        }
        s => cidr_ip("address", s)?,
    };
    // Docker's IPAM gives the IPv6 address of a dual-stack network's
    // endpoint; were it to give none, netd's IPAM picks one and the
    // answer carries it.
    let ip6 = match iface.address_ipv6.as_str() {
        "" => None,
        s => {
            let ip6 = cidr_ip("IPv6 address", s)?;
            if !net.ipv6() {
                return Err(Failure::Err(format!(
                    "netd: endpoint IPv6 address {ip6} on network {}, which has no IPv6 subnet: create the network with --ipv6",
                    net.name
                )));
            }
            Some(ip6)
        }
    };
    let mac = format_mac(mac_for(ip));
    if !iface.mac_address.is_empty() && !iface.mac_address.eq_ignore_ascii_case(&mac) {
        return Err(Failure::Err(format!(
            "netd gives an endpoint the MAC address derived from its IP address ({mac}) and accepts no other (its anti-spoofing checks it): run the container without --mac-address"
        )));
    }
    let answer = |ep_ip6: Option<std::net::IpAddr>| {
        let ip6 = ep_ip6
            .filter(|_| ip6.is_none())
            .zip(net.subnet6)
            .map(|(a, s)| format!("{a}/{}", s.prefix()));
        endpoint_answer(&iface.mac_address, &mac, ip6)
    };
    if let Some((c, ep)) = engine.endpoint_by_id(&req.endpoint_id) {
        if ep.ip == ip && ip6.is_none_or(|a| ep.ip6 == Some(a)) && c.endpoints.len() == 1 {
            return Ok(answer(ep.ip6));
        }
        return Err(Failure::Err(format!(
            "netd: endpoint {} exists already with another address",
            req.endpoint_id
        )));
    }
    let add = ContainerAdd {
        name: endpoint_name(&req.endpoint_id),
        id: Some(req.endpoint_id.clone()),
        sandbox: SandboxRequest::Runtime,
        endpoint: Some(EndpointRequest {
            network: net.name.clone(),
            id: Some(req.endpoint_id.clone()),
            ifname: None,
            ip: Some(ip),
            ip6,
            peer_on_host: true,
        }),
        publish: Vec::new(),
        force_publish: false,
        hostname: None,
        dns: Vec::new(),
        extra_hosts: Vec::new(),
    };
    let c = engine.add_container(add).await?;
    let ep_ip6 = c.endpoints.first().and_then(|e| e.ip6);
    info!(container = %c.name, network = %net.name, %ip, ip6 = ?ep_ip6, "Docker endpoint created");
    Ok(answer(ep_ip6))
}

/// What goes back is only what Docker did not give (libnetwork refuses a
/// driver that changes what it gave): the MAC, and an IPv6 address netd
/// picked (`ip6`, CIDR).
fn endpoint_answer(given_mac: &str, mac: &str, ip6: Option<String>) -> Value {
    let mut iface = serde_json::Map::new();
    if given_mac.is_empty() {
        iface.insert("MacAddress".into(), json!(mac));
    }
    if let Some(ip6) = ip6 {
        iface.insert("AddressIPv6".into(), json!(ip6));
    }
    if iface.is_empty() {
        json!({})
    } else {
        json!({ "Interface": iface })
    }
}

async fn delete_endpoint(engine: &Engine, req: wire::EndpointCall) -> Answer {
    match engine
        .remove_container(&ContainerRef::Id(req.endpoint_id.clone()))
        .await
    {
        Ok(()) => {
            info!(endpoint = %req.endpoint_id, "Docker endpoint deleted");
            Ok(json!({}))
        }
        Err(e) if e.kind == ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e.into()),
    }
}

/// `Leave`: the container end is out of the sandbox again.
async fn leave(engine: &Engine, req: wire::EndpointCall) -> Answer {
    let id = ContainerRef::Id(req.endpoint_id.clone());
    match engine.place_sandbox(&id, None).await {
        Ok(_) => Ok(json!({})),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e.into()),
    }
}

fn oper_info(engine: &Engine, req: wire::EndpointCall) -> Answer {
    let Some((c, ep)) = engine.endpoint_by_id(&req.endpoint_id) else {
        return Ok(json!({ "Value": {} }));
    };
    let bindings: Vec<wire::PortBinding> = engine
        .portmaps()
        .iter()
        .filter(|p| p.container == c.id)
        .flat_map(|p| options::bindings_of(&p.mapping))
        .collect();
    Ok(json!({ "Value": {
        options::PORTMAP: bindings,
        "com.docker.network.endpoint.macaddress": ep.mac,
        "netd.container": c.name,
        "netd.host_veth": ep.host_veth,
    }}))
}

async fn join(engine: &Engine, req: wire::Join) -> Answer {
    let (c, ep) = engine.endpoint_by_id(&req.endpoint_id).ok_or_else(|| {
        Failure::Err(format!(
            "netd: no endpoint {}: it was never created or netd lost it; recreate the container",
            req.endpoint_id
        ))
    })?;
    let Placement::OnHost { peer } = &ep.placement else {
        return Err(Failure::Err(format!(
            "netd: endpoint {} has no interface for Docker to move",
            req.endpoint_id
        )));
    };
    let net = engine.network(&ep.network)?;
    // Where the container end goes: netd can then tell a live endpoint
    // (its namespace there) from one Docker dropped while netd was away.
    if !req.sandbox_key.is_empty() {
        engine
            .place_sandbox(
                &ContainerRef::Id(c.id.0.clone()),
                Some(req.sandbox_key.clone().into()),
            )
            .await?;
    }
    info!(container = %c.name, sandbox = %req.sandbox_key, "Docker endpoint joined");
    // Always a gateway, except on an internal network (no way out): without
    // one Docker would attach the container to its own docker_gwbridge.
    let answer = wire::JoinResponse {
        interface_name: wire::InterfaceName {
            src_name: peer.clone(),
            dst_prefix: "eth".into(),
        },
        gateway: if net.internal {
            String::new()
        } else {
            net.gateway.to_string()
        },
        gateway_ipv6: match net.gateway6 {
            Some(gw) if !net.internal => gw.to_string(),
            _ => String::new(),
        },
        disable_gateway_service: net.internal,
    };
    serde_json::to_value(answer).map_err(|e| Failure::Err(e.to_string()))
}

/// The container address of an endpoint, by id.
fn endpoint_ip(engine: &Engine, id: &str) -> Result<(String, IpAddr), Failure> {
    let (c, ep) = engine
        .endpoint_by_id(id)
        .ok_or_else(|| Failure::Err(format!("netd: no endpoint {id}: recreate the container")))?;
    Ok((c.id.0, ep.ip))
}

fn mapping(p: &Publish, ip: IpAddr) -> PortMapping {
    PortMapping {
        host_ip: p.host_ip,
        host_ports: p.host_ports,
        container_ip: ip,
        container_ports: p.container_ports,
        proto: p.proto,
        ipv4_only: p.ipv4_only,
    }
}

async fn program(engine: &Engine, req: wire::EndpointCall) -> Answer {
    let plan = publishing(&port_bindings(req.options.as_ref())?)?;
    if plan.fixed.is_empty() && plan.pick_one.is_empty() {
        return Ok(json!({}));
    }
    let (id, ip) = endpoint_ip(engine, &req.endpoint_id)?;
    // Programmed again (a retry): the new list replaces the old.
    unpublish_all(engine, &id).await?;
    let fixed: Vec<PortMapping> = plan.fixed.iter().map(|p| mapping(p, ip)).collect();
    if !fixed.is_empty() {
        engine.publish(fixed, false).await?;
    }
    for p in &plan.pick_one {
        let mut last = None;
        for port in p.host_ports.start..=p.host_ports.end {
            let mut m = mapping(p, ip);
            m.host_ports = crate::engine::model::PortRange::single(port);
            match engine.publish(vec![m], false).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) if matches!(e.kind, ErrorKind::Conflict) => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = last {
            unpublish_all(engine, &id).await?;
            return Err(e.into());
        }
    }
    info!(endpoint = %req.endpoint_id, "Docker ports published");
    Ok(json!({}))
}

async fn unpublish_all(engine: &Engine, container_id: &str) -> Result<(), Failure> {
    for p in engine
        .portmaps()
        .into_iter()
        .filter(|p| p.container.0 == container_id)
    {
        match engine.unpublish(&PortSelector::Exact(p.mapping)).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn revoke(engine: &Engine, req: wire::EndpointCall) -> Answer {
    if engine.endpoint_by_id(&req.endpoint_id).is_some() {
        unpublish_all(engine, &req.endpoint_id).await?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_endpoint_answers_only_what_docker_did_not_give() {
        let mac = "02:42:0a:01:00:02";
        assert_eq!(
            endpoint_answer("", mac, None),
            json!({"Interface": {"MacAddress": mac}})
        );
        assert_eq!(endpoint_answer(mac, mac, None), json!({}));
        assert_eq!(
            endpoint_answer(mac, mac, Some("fd00:1::2/64".into())),
            json!({"Interface": {"AddressIPv6": "fd00:1::2/64"}})
        );
    }

    #[test]
    fn join_answers_the_ipv6_gateway_when_there_is_one() {
        let answer = |gateway_ipv6: &str| {
            serde_json::to_value(wire::JoinResponse {
                interface_name: wire::InterfaceName {
                    src_name: "veth1p".into(),
                    dst_prefix: "eth".into(),
                },
                gateway: "10.1.0.1".into(),
                gateway_ipv6: gateway_ipv6.into(),
                disable_gateway_service: false,
            })
            .unwrap()
        };
        assert_eq!(answer("fd00:1::1")["GatewayIPv6"], "fd00:1::1");
        assert!(answer("").get("GatewayIPv6").is_none());
    }
}
