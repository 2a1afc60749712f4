//! netd's userspace: the engine and the front doors over it.
//!
//! - `engine`: the typed core (model, operations, drivers, store, events,
//!   and the interfaces it needs of the kernel);
//! - `kernel`: those interfaces on Linux (aya, rtnetlink, nsfs), plus the
//!   daemon's own kernel chores (conntrack GC, cleanup without state);
//! - `services`: what follows the engine's events (DNS, name files);
//! - `api`: the socket API's wire types, client and rendering;
//! - `server`: the daemon (socket server, start, upkeep);
//! - `cli`: the `netd` command line, a client of the socket API;
//! - `cni`: the CNI plugin (`netd-cni`), another client of it;
//! - `docker`: the Docker network and IPAM plugin the daemon serves.

pub mod api;
pub mod cli;
pub mod cni;
pub mod docker;
pub mod engine;
pub mod kernel;
pub mod server;
pub mod services;
