//! Network drivers: what a kind of network does in the kernel. The engine
//! decides (names, addresses, conflicts, records); a driver validates what
//! only it can check, then sets up and tears down networks and endpoints.
//! netavark's `NetworkDriver` is the model; the bridge driver is the one
//! netd has, and an overlay driver would be another implementation.

pub mod bridge;

use std::path::Path;

use async_trait::async_trait;

use super::{
    error::Result,
    model::{Endpoint, Network},
};

/// How an endpoint is wired: into a namespace netd configures, or left on
/// the host for the runtime.
pub struct EndpointSetup<'a> {
    /// The namespace the container side goes into (None: stays on the
    /// host under the placement's peer name).
    pub netns: Option<&'a Path>,
    /// This endpoint carries the container's default route.
    pub default_route: bool,
}

#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// Checks a network about to be created against the kernel (nothing is
    /// created); may fill in what it found (an adopted bridge).
    async fn validate(&self, net: &mut Network, adopt: bool) -> Result<()>;
    /// Makes the network exist in the kernel; idempotent (also used to
    /// repair at start).
    async fn setup(&self, net: &Network) -> Result<()>;
    /// Removes what `setup` made (never what the network adopted).
    async fn teardown(&self, net: &Network) -> Result<()>;
    /// Creates an endpoint's interfaces and attaches the datapath; returns
    /// the host side's ifindex.
    async fn setup_endpoint(
        &self,
        net: &Network,
        ep: &Endpoint,
        how: EndpointSetup<'_>,
    ) -> Result<u32>;
    /// (Re)attaches the datapath to an endpoint whose interfaces exist.
    async fn attach_endpoint(&self, net: &Network, ep: &Endpoint) -> Result<()>;
    /// Detaches the datapath and deletes the interfaces now; pieces
    /// already gone are fine.
    async fn teardown_endpoint(&self, ep: &Endpoint) -> Result<()>;
    /// Detaches the datapath now and deletes the interfaces in the
    /// background (they wait for RCU grace periods); a crash before that
    /// finishes is caught by `sweep`.
    fn release_endpoint(&self, ep: &Endpoint) -> Result<()>;
    /// What is wrong with an endpoint's interfaces, if anything.
    async fn endpoint_problem(&self, ep: &Endpoint) -> Result<Option<String>>;
    /// Removes interfaces and attachments on `networks` that no endpoint
    /// in `owned` (host interface names) accounts for.
    async fn sweep(&self, networks: &[Network], owned: &[String]) -> Result<()>;
}
