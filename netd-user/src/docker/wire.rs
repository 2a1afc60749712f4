//! libnetwork's remote driver and IPAM driver messages (docs/remote.md,
//! docs/ipam.md in moby): JSON bodies of HTTP POSTs, field names in Go's
//! spelling. Unknown fields are ignored, missing ones take their default:
//! Docker versions differ in what they send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Options as Docker sends them: a free-form map.
pub type Options = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamData {
    #[serde(rename = "AddressSpace")]
    pub address_space: String,
    /// CIDR.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// CIDR: the gateway address with the pool's prefix length.
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "AuxAddresses")]
    pub aux_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Options")]
    pub options: Option<Options>,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// CIDR.
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface")]
    pub interface: Option<Interface>,
    #[serde(rename = "Options")]
    pub options: Option<Options>,
}

/// DeleteEndpoint, EndpointOperInfo, Leave, Program/RevokeExternalConnectivity.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointCall {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Options")]
    pub options: Option<Options>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The sandbox's namespace file (in Docker's exec root).
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    #[serde(rename = "Options")]
    pub options: Option<Options>,
}

#[derive(Debug, Serialize)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: String,
}

#[derive(Debug, Serialize)]
pub struct JoinResponse {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    #[serde(rename = "DisableGatewayService")]
    pub disable_gateway_service: bool,
}

/// One entry of `com.docker.network.portmap` (libnetwork's PortBinding).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct PortBinding {
    /// IP protocol number: 6 tcp, 17 udp, 132 sctp.
    #[serde(rename = "Proto")]
    pub proto: u8,
    /// Always empty from Docker: the container's address.
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    /// 0: netd picks.
    #[serde(rename = "HostPort")]
    pub host_port: u16,
    /// Above `host_port`: any one port of the range will do.
    #[serde(rename = "HostPortEnd")]
    pub host_port_end: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestPool {
    #[serde(rename = "AddressSpace")]
    pub address_space: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "SubPool")]
    pub sub_pool: String,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "V6")]
    pub v6: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReleasePool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// Preferred address, plain (no prefix); empty: any.
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Address")]
    pub address: String,
}
