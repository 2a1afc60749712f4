//! Ctrl-C (SIGINT), SIGTERM and SIGHUP set a flag instead of killing the
//! benchmark, which stops at the next step and unwinds: every namespace,
//! daemon and server is owned by a guard whose `Drop` removes it.
//!
//! Children are started in their own process group (see `procs`), so the
//! terminal's Ctrl-C reaches only this process and never kills an `ip netns
//! del` halfway through the cleanup.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an
        // atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "cannot install a handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once a signal arrived, so `?` unwinds to the guards.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted: cleaning up and stopping");
    }
    Ok(())
}
