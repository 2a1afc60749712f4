//! An in-memory store for the engine's unit tests; it can be told to fail
//! the next commit, to test that an operation leaves nothing behind.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use super::{Change, State, Store};
use crate::engine::error::{Error, Result};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    fail_next_commit: AtomicBool,
    commits: AtomicUsize,
}

impl MemoryStore {
    pub fn fail_next_commit(&self) {
        self.fail_next_commit.store(true, Ordering::SeqCst);
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<State> {
        Ok(self
            .state
            .lock()
            .map_err(|_| Error::store(anyhow::anyhow!("memory store poisoned")))?
            .clone())
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        if self.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(Error::store(anyhow::anyhow!("injected commit failure")));
        }
        self.state
            .lock()
            .map_err(|_| Error::store(anyhow::anyhow!("memory store poisoned")))?
            .apply(changes);
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
