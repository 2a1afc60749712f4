//! Whole-engine reads: the datapath's counters.

use netd_common::{Counter, StatIndex};

use crate::engine::{Engine, error::Result};

impl Engine {
    /// The datapath's packet counters, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<(StatIndex, Counter)>> {
        self.kernel().datapath.stats()
    }
}
