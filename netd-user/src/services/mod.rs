//! What follows the engine's events: the embedded DNS responders, the
//! generated name files, and the flows of removed containers.

pub mod dns;
pub mod flows;
pub mod namefiles;
