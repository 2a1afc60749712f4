//! Errors for what is not there, and the lookups every operation shares.

use crate::engine::{
    error::{Error, Remedy, Result},
    store::State,
};

pub(super) fn no_such_container(name: &str) -> Error {
    Error::not_found(format!("no such container: {name}")).with_remedy(Remedy::ListContainers)
}

pub(super) fn no_such_network(name: &str) -> Error {
    Error::not_found(format!("no such network: {name}")).with_remedy(Remedy::ListNetworks)
}

/// A network that refuses port publishing (Docker and netavark apply no
/// mappings on `--internal` networks: nothing outside may reach in).
pub(super) fn refuse_internal(state: &State, network: &str) -> Result<()> {
    match state.networks.get(network) {
        Some(net) if net.internal => Err(Error::invalid(format!(
            "network {network} is internal: its containers cannot publish ports (nothing outside reaches an internal network); connect the container to another network and publish there"
        ))),
        Some(_) => Ok(()),
        None => Err(no_such_network(network)),
    }
}
