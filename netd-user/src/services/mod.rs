//! What follows the engine's events: the embedded DNS responders and the
//! generated name files.

pub mod dns;
pub mod namefiles;
