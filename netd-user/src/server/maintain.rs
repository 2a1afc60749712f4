//! Periodic upkeep: expire conntrack entries, refresh host addresses,
//! warn when new flows are being dropped for lack of room; and host
//! address changes followed as they happen.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use netd_common::{Counter, Ct6Key, CtKey, StatIndex};
use tracing::{debug, warn};

use super::daemon::Daemon;
use crate::kernel::conntrack::{Conntrack, Timeouts, Tuple};

/// Periodic upkeep: expire conntrack entries, refresh host addresses,
/// warn when new flows are being dropped for lack of room.
pub async fn maintain(daemon: Arc<Daemon>) {
    let (bpffs, timeouts, interval) = (
        daemon.config.bpffs.clone(),
        daemon.config.ct_timeouts,
        daemon.config.ct_gc_interval,
    );
    let mut drops = DropWatch::default();
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = daemon.engine.sync_host_addrs().await {
            warn!("refreshing host addresses: {e}");
        }
        // The GC has its own handles on the pinned maps.
        gc::<CtKey>(&daemon, &bpffs, &timeouts, false);
        gc::<Ct6Key>(&daemon, &bpffs, &timeouts, true);
        match daemon.engine.stats() {
            Ok(stats) => drops.observe(Instant::now(), &stats),
            Err(e) => warn!("reading the datapath counters: {e}"),
        }
    }
}

/// One GC pass over a family's tables (`v6`: the IPv6 ones).
fn gc<K: Tuple>(daemon: &Daemon, bpffs: &Path, timeouts: &Timeouts, v6: bool) {
    let started = Instant::now();
    match Conntrack::<K>::open(bpffs).and_then(|mut ct| ct.gc(timeouts)) {
        Ok(pass) => {
            debug!(
                ipv6 = v6,
                entries = pass.entries,
                expired = pass.expired,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "conntrack gc pass"
            );
            daemon.set_ct_entries(v6, pass.entries);
        }
        Err(e) => warn!(ipv6 = v6, "conntrack gc: {e:#}"),
    }
}

/// At most one warning per this interval about dropped new flows, so a
/// full table under attack does not flood the log.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Follows `drop_ct_full` and `drop_no_port` between maintenance ticks.
#[derive(Debug, Default)]
struct DropWatch {
    /// Counter values at the last warning (or the first look).
    seen: Option<(u64, u64)>,
    warned_at: Option<Instant>,
}

impl DropWatch {
    fn observe(&mut self, now: Instant, stats: &[(StatIndex, Counter)]) {
        let get = |index| {
            stats
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(0, |(_, c)| c.packets)
        };
        if let Some(message) =
            self.check(now, get(StatIndex::DropCtFull), get(StatIndex::DropNoPort))
        {
            warn!("{message}");
        }
    }

    /// The warning to log now, if the counters grew and the last warning
    /// is old enough. Growth held back by the rate limit is reported with
    /// the next warning. The first look only sets the baseline: drops from
    /// before this daemon started are not news.
    fn check(&mut self, now: Instant, ct_full: u64, no_port: u64) -> Option<String> {
        let Some((old_full, old_port)) = self.seen else {
            self.seen = Some((ct_full, no_port));
            return None;
        };
        let (new_full, new_port) = (
            ct_full.saturating_sub(old_full),
            no_port.saturating_sub(old_port),
        );
        let recent = self
            .warned_at
            .is_some_and(|at| now.duration_since(at) < DROP_WARN_EVERY);
        if (new_full == 0 && new_port == 0) || recent {
            return None;
        }
        self.seen = Some((ct_full, no_port));
        self.warned_at = Some(now);
        Some(format!(
            "new flows dropped: {new_full} because the conntrack table is full (drop_ct_full total {ct_full}: new flows dropped, or answered ones left evictable; raise --ct-max (--ct6-max for IPv6) or shorten the timeouts), {new_port} for want of a free MASQUERADE port (drop_no_port total {no_port}; widen --nat-ports)"
        ))
    }
}

/// Refreshes the datapath's host addresses on every address change, so a
/// port published on a new address works the moment it exists.
pub async fn follow_host_addresses(daemon: Arc<Daemon>) {
    use futures::StreamExt;
    let mut changes = match crate::kernel::host::address_changes() {
        Ok(changes) => changes,
        Err(e) => {
            warn!("host addresses are refreshed on the GC timer only: {e:#}");
            return;
        }
    };
    while changes.next().await.is_some() {
        // Coalesce a burst (a new network adds several) into one refresh.
        while changes.try_recv().is_ok() {}
        if let Err(e) = daemon.engine.sync_host_addrs().await {
            warn!("refreshing host addresses: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_warnings_are_rate_limited() {
        let mut w = DropWatch::default();
        let t0 = Instant::now();
        assert_eq!(w.check(t0, 5, 0), None, "the first look is the baseline");
        assert_eq!(w.check(t0, 5, 0), None, "no growth, no warning");
        let first = w.check(t0 + Duration::from_secs(1), 5, 3);
        assert!(first.is_some_and(|m| m.contains("3 for want of a free MASQUERADE port")));
        assert_eq!(
            w.check(t0 + Duration::from_secs(2), 9, 4),
            None,
            "within 10 s"
        );
        let next = w.check(t0 + Duration::from_secs(12), 9, 4);
        assert!(
            next.is_some_and(
                |m| m.contains("4 because the conntrack table is full") && m.contains("1 for want")
            ),
            "held-back growth is reported with the next warning"
        );
    }
}
