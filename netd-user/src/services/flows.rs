//! Flows follow their container: when a container (or one of its
//! endpoints) is removed, its connection-tracking entries go with it, so
//! no flow of a removed container is left for the next holder of its
//! address (Docker's `docker rm`, CNI's DEL, `netd container rm`).

use std::{net::IpAddr, path::PathBuf};

use netd_common::{Ct6Key, CtKey};

use tracing::{debug, warn};

use crate::{
    engine::{
        events::{Event, Observer},
        store::State,
    },
    kernel::conntrack::{Conntrack, Tuple},
};

pub struct FlowSweeper {
    bpffs: PathBuf,
}

impl FlowSweeper {
    pub fn new(bpffs: PathBuf) -> Self {
        Self { bpffs }
    }

    fn forget(&self, ips: Vec<IpAddr>) {
        let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(IpAddr::is_ipv6);
        if !v4.is_empty() {
            self.forget_in::<CtKey>(&v4);
        }
        if !v6.is_empty() {
            self.forget_in::<Ct6Key>(&v6);
        }
    }

    /// Forgets the flows of `ips` in one family's tables.
    fn forget_in<K: Tuple>(&self, ips: &[IpAddr]) {
        match Conntrack::<K>::open(&self.bpffs).and_then(|mut ct| ct.forget(ips)) {
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
