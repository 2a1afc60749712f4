//! `IpamDriver.*`: pools and addresses, recorded in netd's store (the
//! engine's pools), so they outlive restarts of netd and of Docker.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use super::{Answer, Failure, parse, wire};
use crate::engine::{Engine, requests::AddressUse};

/// Docker's `RequestAddressType` for a network's gateway.
const ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";

pub(super) async fn call(engine: &Engine, method: &str, body: &[u8]) -> Answer {
    match method {
        "IpamDriver.GetCapabilities" => Ok(json!({
            "RequiresMACAddress": false,
            "RequiresRequestReplay": false,
        })),
        "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": "netd",
            "GlobalDefaultAddressSpace": "netd-global",
        })),
        "IpamDriver.RequestPool" => request_pool(engine, parse(body)?).await,
        "IpamDriver.ReleasePool" => {
            let req: wire::ReleasePool = parse(body)?;
            engine.release_pool(&req.pool_id).await?;
            Ok(json!({}))
        }
        "IpamDriver.RequestAddress" => request_address(engine, parse(body)?).await,
        "IpamDriver.ReleaseAddress" => {
            let req: wire::ReleaseAddress = parse(body)?;
            if let Some(ip) = address(&req.address) {
                engine.release_address(&req.pool_id, ip).await?;
            }
            Ok(json!({}))
        }
        other => Err(Failure::Unknown(other.into())),
    }
}

/// An address as Docker writes it: plain or in CIDR form.
fn address(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNetwork>().ok().map(|n| n.ip()))
}

async fn request_pool(engine: &Engine, req: wire::RequestPool) -> Answer {
    if !req.sub_pool.is_empty() && req.sub_pool != req.pool {
        return Err(Failure::Err(
            "netd hands out addresses from the whole subnet: create the network without --ip-range"
                .into(),
        ));
    }
    let example = if req.v6 { "fd00:1::/64" } else { "10.1.0.0/24" };
    let subnet = match req.pool.as_str() {
        "" => None,
        s => Some(s.parse::<IpNetwork>().map_err(|_| {
            Failure::Err(format!(
                "netd: subnet {s:?} is not in CIDR form (e.g. {example})"
            ))
        })?),
    };
    // `V6`: Docker asks for the pool of a `--ipv6` network's second
    // family; without a subnet netd gives a /64 of its ULA pool.
    let pool = engine.request_pool(subnet, req.v6).await?;
    Ok(json!({ "PoolID": pool.id, "Pool": pool.subnet.to_string(), "Data": {} }))
}

async fn request_address(engine: &Engine, req: wire::RequestAddress) -> Answer {
    let preferred = match req.address.as_str() {
        "" => None,
        s => {
            Some(address(s).ok_or_else(|| Failure::Err(format!("netd: {s:?} is not an address")))?)
        }
    };
    let what = match req.options.as_ref().and_then(|o| o.get(ADDRESS_TYPE)) {
        Some(t) if t == GATEWAY_TYPE => AddressUse::Gateway,
        _ => AddressUse::Host,
    };
    let ip = engine
        .request_address(&req.pool_id, preferred, what)
        .await?;
    let prefix = engine
        .pools()
        .into_iter()
        .find(|p| p.id == req.pool_id)
        .map_or(if ip.is_ipv6() { 128 } else { 32 }, |p| p.subnet.prefix());
    Ok(json!({ "Address": format!("{ip}/{prefix}"), "Data": Value::Object(Default::default()) }))
}
