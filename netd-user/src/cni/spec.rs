//! The CNI specification's wire types (1.1.0, and the results of 0.3.0
//! through 1.0.0): the network configuration netd reads, the result it
//! writes, the error object, and version negotiation.

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The versions whose configurations and results netd reads and writes.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version netd implements (and answers `VERSION` in).
pub const LATEST: &str = "1.1.0";
/// The daemon's socket when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";
/// The netd network when the configuration names none.
pub const DEFAULT_NETWORK: &str = crate::engine::model::DEFAULT_NETWORK;
/// The key a runtime lists the attachments to keep under, in `GC`.
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";

/// Error codes: those the spec reserves (1-99), then netd's own (100+,
/// listed in README).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// The container or one of the things the request names does not
    /// exist (the netd network, an attachment CHECK looks for).
    pub const NOT_FOUND: u32 = 100;
    /// The attachment (container id and interface) or a name exists.
    pub const ALREADY_EXISTS: u32 = 101;
    /// A host port (or address) is taken by another container or a host
    /// process.
    pub const CONFLICT: u32 = 102;
    /// Something is still in use.
    pub const IN_USE: u32 = 103;
    /// The network's addresses ran out.
    pub const EXHAUSTED: u32 = 104;
    /// The kernel refused (netlink, bpf, namespaces).
    pub const KERNEL: u32 = 105;
    /// The daemon's state database failed.
    pub const STORE: u32 = 106;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 107;
    /// The daemon answered something this plugin does not understand.
    pub const PROTOCOL: u32 = 108;
}

/// The spec's error object; printed on stdout, with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            cni_version: LATEST.into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)
    }
}

/// Whether netd reads and writes this version.
pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "incompatible CNI version {version:?}: netd supports {}; set \"cniVersion\" in the network configuration to one of them",
            SUPPORTED_VERSIONS.join(", ")
        ),
    ))
}

/// Compares two supported versions (`0.4.0` < `1.0.0`).
pub fn version_at_least(version: &str, least: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(version) >= parse(least)
}

/// `VERSION`'s answer.
pub fn version_info() -> Value {
    serde_json::json!({ "cniVersion": LATEST, "supportedVersions": SUPPORTED_VERSIONS })
}

/// One entry of `runtimeConfig.portMappings` (the `portMappings`
/// capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// What a runtime passes for the capabilities netd declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The `ips` capability: addresses, with or without a prefix length.
    #[serde(default)]
    pub ips: Vec<String>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network configuration (one plugin's entry of a conflist, as the
/// runtime hands it over).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub plugin_type: Option<String>,
    /// The netd network to attach to (default `bridge`).
    #[serde(default)]
    pub network: Option<String>,
    /// The daemon's socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// `args.cni.ips` (the conventions' static addresses).
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Decodes stdin: bytes that are not a JSON object get code 6.
    pub fn decode(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("cannot decode the network configuration on stdin: {e}"),
            )
        })?;
        if !value.is_object() {
            return Err(CniError::new(
                code::DECODE,
                "cannot decode the network configuration on stdin: it is not a JSON object",
            ));
        }
        serde_json::from_value(value).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("cannot decode the network configuration on stdin: {e}"),
            )
        })
    }

    /// The configuration's version, checked.
    pub fn version(&self) -> Result<&str, CniError> {
        let version = self.cni_version.as_deref().ok_or_else(|| {
            CniError::invalid_config(
                "the network configuration has no \"cniVersion\": add one (netd supports 0.3.0 to 1.1.0)",
            )
        })?;
        check_version(version)?;
        Ok(version)
    }

    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(DEFAULT_NETWORK)
    }

    pub fn socket(&self) -> &Path {
        self.socket
            .as_deref()
            .unwrap_or_else(|| Path::new(DEFAULT_SOCKET))
    }

    /// What ADD and CHECK refuse: no name, an `ipam` section, an MTU
    /// netd's veths do not have.
    pub fn validate(&self) -> Result<(), CniError> {
        let name = self.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::invalid_config(
                "the network configuration has no \"name\": add one",
            ));
        }
        if self.ipam.is_some() {
            return Err(CniError::invalid_config(
                "netd is its own IPAM: remove the \"ipam\" section; addresses come from the netd network's subnet (`netd network create NAME --subnet CIDR`), a fixed one from CNI_ARGS IP= or the \"ips\" capability",
            ));
        }
        if let Some(mtu) = self.mtu
            && mtu != 1500
        {
            return Err(CniError::invalid_config(format!(
                "mtu {mtu}: netd's veths have the kernel's default MTU 1500; remove \"mtu\" or set it to 1500 (a tuning plugin chained after netd can change it)"
            )));
        }
        if let Some(network) = &self.network
            && !crate::engine::validate::is_valid_name(network)
        {
            return Err(CniError::invalid_config(format!(
                "invalid netd network name {network:?} in \"network\": use the name `netd network ls` shows"
            )));
        }
        Ok(())
    }

    /// The fixed addresses asked for through the `ips` capability or
    /// `args.cni.ips` (at most one of each family).
    pub fn requested_ips(&self) -> Vec<String> {
        let mut ips = self.runtime_config.ips.clone();
        if let Some(list) = self
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"))
            .and_then(Value::as_array)
        {
            ips.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        ips
    }
}

/// Parses `10.1.2.3` or `10.1.2.3/24` (the prefix is the network's
/// anyway).
pub fn parse_ip(text: &str) -> Result<IpAddr, CniError> {
    let addr = text.split('/').next().unwrap_or_default();
    addr.parse().map_err(|_| {
        CniError::invalid_config(format!(
            "invalid address {text:?} asked for: give an address of the netd network's subnets, like 172.18.0.10 or fd00:1::10"
        ))
    })
}

/// An interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An address of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// "4" or "6": results before 1.0.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A plugin's result (ADD), also the `prevResult` of the next plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// A `prevResult`, decoded (code 6 if it is not a result).
    pub fn decode(prev: &Value) -> Result<Self, CniError> {
        serde_json::from_value(prev.clone())
            .map_err(|e| CniError::new(code::DECODE, format!("cannot decode \"prevResult\": {e}")))
    }

    /// Appends `mine` (whose interface indexes count from 0) to this
    /// result: netd placed after another plugin in a chain.
    pub fn append(&mut self, mine: CniResult) {
        let offset = self.interfaces.len();
        self.interfaces.extend(mine.interfaces);
        self.ips.extend(mine.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(mine.routes);
        if self.dns.is_empty() {
            self.dns = mine.dns;
        }
    }

    /// The result in the form of `version`: addresses carry `"version"`
    /// before 1.0.0 and not after.
    pub fn in_version(mut self, version: &str) -> Self {
        let old = !version_at_least(version, "1.0.0");
        for ip in &mut self.ips {
            ip.version = old.then(|| {
                let v6 = ip.address.contains(':');
                if v6 { "6" } else { "4" }.to_owned()
            });
        }
        self.cni_version = version.to_owned();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_version("1.1.0").is_ok());
        assert!(check_version("0.3.0").is_ok());
        assert_eq!(
            check_version("0.2.0").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            check_version("9.9.9").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert!(version_at_least("1.1.0", "1.0.0"));
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
    }

    #[test]
    fn decoding_errors_have_their_codes() {
        assert_eq!(NetConf::decode(b"{").unwrap_err().code, code::DECODE);
        assert_eq!(NetConf::decode(b"[1]").unwrap_err().code, code::DECODE);
        assert_eq!(
            NetConf::decode(br#"{"cniVersion": 3}"#).unwrap_err().code,
            code::DECODE
        );
        let conf = NetConf::decode(br#"{"name":"n","type":"netd"}"#).unwrap();
        assert_eq!(conf.version().unwrap_err().code, code::INVALID_CONFIG);
        let conf = NetConf::decode(br#"{"cniVersion":"1.1.0","name":"n","ipam":{}}"#).unwrap();
        assert_eq!(conf.validate().unwrap_err().code, code::INVALID_CONFIG);
        let conf = NetConf::decode(br#"{"cniVersion":"1.1.0","name":"n","mtu":1400}"#).unwrap();
        assert_eq!(conf.validate().unwrap_err().code, code::INVALID_CONFIG);
        let conf = NetConf::decode(br#"{"cniVersion":"1.1.0","name":"n","mtu":1500}"#).unwrap();
        assert!(conf.validate().is_ok());
    }

    #[test]
    fn runtime_config_and_static_ips() {
        let conf = NetConf::decode(
            br#"{"cniVersion":"1.0.0","name":"n","type":"netd",
                 "runtimeConfig":{"portMappings":[{"hostPort":8088,"containerPort":80,"protocol":"tcp","hostIP":"198.18.0.1"}],
                                  "ips":["172.18.0.9/16"]},
                 "args":{"cni":{"ips":["172.18.0.10"]}}}"#,
        )
        .unwrap();
        assert_eq!(conf.runtime_config.port_mappings[0].host_port, 8088);
        assert_eq!(
            conf.runtime_config.port_mappings[0].host_ip.as_deref(),
            Some("198.18.0.1")
        );
        assert_eq!(conf.requested_ips(), ["172.18.0.9/16", "172.18.0.10"]);
        assert_eq!(
            parse_ip("172.18.0.9/16").unwrap(),
            "172.18.0.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(parse_ip("x").unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn results_chain_and_convert() {
        let prev = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo0", "sandbox": "/x", "custom": 1}],
            "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}],
        });
        let mut result = CniResult::decode(&prev).unwrap();
        result.append(CniResult {
            interfaces: vec![
                Interface {
                    name: "veth1".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    sandbox: Some("/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: "172.18.0.2/16".into(),
                gateway: Some("172.18.0.1".into()),
                interface: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(result.ips[1].interface, Some(2));
        let old = serde_json::to_value(result.clone().in_version("0.4.0")).unwrap();
        assert_eq!(old["ips"][1]["version"], "4");
        assert_eq!(old["interfaces"][0]["custom"], 1, "unknown fields pass on");
        let new = serde_json::to_value(result.in_version("1.1.0")).unwrap();
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["cniVersion"], "1.1.0");
    }
}
