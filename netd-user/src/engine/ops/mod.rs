//! The engine's operations, one file per kind of object. Each public
//! operation takes the mutation lock, plans against the state (pure
//! functions, unit-tested), makes the kernel changes through the drivers,
//! commits once, and emits its events.

mod container;
mod endpoint;
mod lookup;
mod network;
mod pool;
mod portmap;
mod reconcile;
mod system;
mod teardown;
