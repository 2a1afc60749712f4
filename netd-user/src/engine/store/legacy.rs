//! Records of schema 1 (netd before the engine): containers keyed by name
//! with a `mode` and a `netns`, port mappings naming their container. Read
//! once, when a schema-1 database is opened, and rewritten in schema 2.

use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::model::{Container, ContainerId, Endpoint, NameConfig, Owner, Phase, Sandbox};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NetMode {
    Bridge,
    Host,
    None,
    Container(String),
}

#[derive(Deserialize)]
pub struct ContainerV1 {
    id: String,
    name: String,
    mode: NetMode,
    netns: PathBuf,
    endpoints: Vec<Endpoint>,
    names: NameConfig,
    phase: Phase,
}

impl From<ContainerV1> for Container {
    fn from(old: ContainerV1) -> Self {
        let sandbox = match old.mode {
            NetMode::Bridge => Sandbox::Netns {
                path: old.netns,
                owner: Owner::Netd,
            },
            NetMode::None => Sandbox::Isolated { path: old.netns },
            NetMode::Host => Sandbox::Host,
            NetMode::Container(other) => Sandbox::Shared { container: other },
        };
        Container {
            id: ContainerId(old.id),
            name: old.name,
            sandbox,
            endpoints: old.endpoints,
            names: old.names,
            phase: old.phase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_1_containers_convert() {
        let json = r#"{"id":"abc","name":"c1","mode":"bridge","netns":"/run/netns/c1",
            "endpoints":[{"network":"bridge","ifname":"eth0","ip":"172.17.0.2",
            "mac":"02:42:ac:11:00:02","host_veth":"vethabc","host_ifindex":7}],
            "names":{"hostname":"c1","dns":["1.1.1.1"],"extra_hosts":[["db","10.0.0.5"]]},
            "phase":"ready"}"#;
        let c: Container = serde_json::from_str::<ContainerV1>(json).unwrap().into();
        assert_eq!(c.id.0, "abc");
        assert_eq!(
            c.sandbox.owned_netns(),
            Some(std::path::Path::new("/run/netns/c1"))
        );
        assert_eq!(c.endpoints[0].ip.to_string(), "172.17.0.2");
        let shared = r#"{"id":"d","name":"c2","mode":{"container":"c1"},"netns":"/run/netns/c1",
            "endpoints":[],"names":{"hostname":"c2","dns":[],"extra_hosts":[]},"phase":"ready"}"#;
        let c: Container = serde_json::from_str::<ContainerV1>(shared).unwrap().into();
        assert_eq!(
            c.sandbox,
            Sandbox::Shared {
                container: "c1".into()
            }
        );
    }
}
