//! What the engine tells others about its changes. Observers (the DNS
//! responders, the generated name files) are called in order, right after
//! each change is committed and before the operation returns, with the
//! state as it now is; anything else can follow the broadcast channel.

use std::sync::Arc;

use tokio::sync::broadcast;
use tracing::warn;

use super::{
    model::{Container, Endpoint, Network, PortMap},
    store::State,
};

#[derive(Debug, Clone)]
pub enum Event {
    /// The engine (re)started: observers rebuild from the whole state.
    Resync,
    NetworkCreated(Network),
    NetworkRemoved(Network),
    ContainerAdded(Container),
    ContainerRemoved(Container),
    /// `container` as it is after the change.
    EndpointAdded {
        container: Container,
        endpoint: Endpoint,
    },
    EndpointRemoved {
        container: Container,
        endpoint: Endpoint,
    },
    PortsPublished(Vec<PortMap>),
    PortsUnpublished(Vec<PortMap>),
}

/// Follows the engine's changes synchronously.
pub trait Observer: Send + Sync {
    /// Failures are the observer's to report: the change is made.
    fn notify(&self, event: &Event, state: &State);
}

pub struct Events {
    observers: Vec<Arc<dyn Observer>>,
    channel: broadcast::Sender<Event>,
}

impl Events {
    pub fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        let (channel, _) = broadcast::channel(1024);
        Self { observers, channel }
    }

    pub fn emit(&self, event: Event, state: &State) {
        for observer in &self.observers {
            observer.notify(&event, state);
        }
        // No subscriber is fine.
        if self.channel.send(event).is_err() && self.channel.receiver_count() > 0 {
            warn!("event subscribers fell behind");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.channel.subscribe()
    }
}
