//! Flows follow their container: when a container (or one of its
//! endpoints) is removed, its connection-tracking entries go with it, so
//! no flow of a removed container is left for the next holder of its
//! address (Docker's `docker rm`, CNI's DEL, `netd container rm`).

use std::{net::IpAddr, path::PathBuf};

use tracing::{debug, warn};

use crate::{
    engine::{
        events::{Event, Observer},
        store::State,
    },
    kernel::conntrack::{self, Conntrack},
};

pub struct FlowSweeper {
    bpffs: PathBuf,
}

impl FlowSweeper {
    pub fn new(bpffs: PathBuf) -> Self {
        Self { bpffs }
    }

    fn forget(&self, ips: Vec<IpAddr>) {
        let ips6: Vec<[u8; 16]> = ips
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(ip) => Some(ip.octets()),
                IpAddr::V4(_) => None,
            })
            .collect();
        if !ips6.is_empty() {
            match conntrack::forget6(&self.bpffs, &ips6) {
                Ok(n) => debug!(entries = n, "IPv6 flows of a removed endpoint forgotten"),
                Err(e) => warn!("forgetting the IPv6 flows of a removed endpoint: {e:#}"),
            }
        }
        let ips: Vec<u32> = ips
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(ip) => Some(u32::from(ip).to_be()),
                IpAddr::V6(_) => None,
            })
            .collect();
        if ips.is_empty() {
            return;
        }
        match Conntrack::open(&self.bpffs).and_then(|mut ct| ct.forget(&ips)) {
            Ok(n) => debug!(flows = n, "flows of a removed endpoint forgotten"),
            Err(e) => warn!("forgetting the flows of a removed endpoint: {e:#}"),
        }
    }
}

impl Observer for FlowSweeper {
    fn notify(&self, event: &Event, _state: &State) {
        match event {
            Event::ContainerRemoved(c) => self.forget(
                c.endpoints
                    .iter()
                    .flat_map(|e| std::iter::once(e.ip).chain(e.ip6))
                    .collect(),
            ),
            Event::EndpointRemoved { endpoint, .. } => {
                self.forget(std::iter::once(endpoint.ip).chain(endpoint.ip6).collect())
            }
            _ => {}
        }
    }
}
