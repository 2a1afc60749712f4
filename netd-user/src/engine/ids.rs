//! Ids netd makes up: 64 hex digits, like Docker's.

use std::{fs::File, io::Read};

use super::error::{Error, Result};

/// A 64-hex-digit id, like Docker's.
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::kernel(anyhow::Error::new(e).context("reading /dev/urandom")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
