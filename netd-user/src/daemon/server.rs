//! The Unix-socket server: one JSON line in, one JSON line out.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    signal::unix::{SignalKind, signal},
    sync::{Mutex, Notify},
};
use tracing::{debug, info, warn};

use netd_common::{Counter, StatIndex};

use super::{Daemon, DaemonConfig};
use crate::{
    api::{Request, Response},
    conntrack::{Conntrack, Filter},
};

/// The longest request line the daemon reads. The largest real request
/// (`container add` with many `-p`) is a few KiB; the bound keeps one
/// client from making the daemon buffer an unbounded line.
const REQUEST_LIMIT: u64 = 1 << 20;

/// Runs the daemon until SIGINT/SIGTERM or `netd down`.
pub async fn run(config: DaemonConfig) -> Result<()> {
    let _lock = lock_state_dir(&config.state_dir)?;
    refuse_if_socket_live(&config.socket).await?;
    let socket = config.socket.clone();
    let daemon = Arc::new(Mutex::new(Daemon::start(config).await?));
    let listener = bind(&socket)?;
    tokio::spawn(maintain(daemon.clone()));
    tokio::spawn(follow_host_addresses(daemon.clone()));
    info!(socket = %socket.display(), "netd daemon ready");
    let shutdown = Arc::new(Notify::new());
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let went_down = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, daemon.clone(), shutdown.clone()));
                }
                Err(e) => warn!("accept failed: {e}"),
            },
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            _ = shutdown.notified() => break true,
        }
    };
    let _ = fs::remove_file(&socket);
    if let Some(dir) = socket.parent() {
        let _ = fs::remove_dir(dir); // only if empty: it may not be ours alone
    }
    if went_down {
        info!("netd daemon stopped after `netd down`");
    } else {
        info!("netd daemon stopped; the datapath keeps running from its pinned links");
    }
    Ok(())
}

/// Periodic upkeep: expire conntrack entries, refresh host addresses,
/// warn when new flows are being dropped for lack of room.
async fn maintain(daemon: Arc<Mutex<Daemon>>) {
    let (bpffs, timeouts, interval) = {
        let d = daemon.lock().await;
        (
            d.config.bpffs.clone(),
            d.config.ct_timeouts,
            d.config.ct_gc_interval,
        )
    };
    let mut drops = DropWatch::default();
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = daemon.lock().await.refresh_host_addrs().await {
            warn!("refreshing host addresses: {e:#}");
        }
        // The GC has its own handle on the pinned map: no daemon lock.
        let started = Instant::now();
        match Conntrack::open(&bpffs).and_then(|mut ct| ct.gc(&timeouts)) {
            Ok(pass) => {
                debug!(
                    entries = pass.entries,
                    expired = pass.expired,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "conntrack gc pass"
                );
                daemon.lock().await.ct_entries = Some(pass.entries);
            }
            Err(e) => warn!("conntrack gc: {e:#}"),
        }
        let counters = daemon.lock().await.datapath.stats();
        match counters {
            Ok(stats) => drops.observe(Instant::now(), &stats),
            Err(e) => warn!("reading the datapath counters: {e:#}"),
        }
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
            "new flows dropped: {new_full} because the conntrack table is full (drop_ct_full total {ct_full}: new flows dropped, or answered ones left evictable; raise --ct-max or shorten the timeouts), {new_port} for want of a free MASQUERADE port (drop_no_port total {no_port}; widen --nat-ports)"
        ))
    }
}

/// Refreshes the datapath's host addresses on every address change, so a
/// port published on a new address works the moment it exists.
async fn follow_host_addresses(daemon: Arc<Mutex<Daemon>>) {
    use futures::StreamExt;
    let mut changes = match crate::host::address_changes() {
        Ok(changes) => changes,
        Err(e) => {
            warn!("host addresses are refreshed on the GC timer only: {e:#}");
            return;
        }
    };
    while changes.next().await.is_some() {
        // Coalesce a burst (a new network adds several) into one refresh.
        while changes.try_recv().is_ok() {}
        if let Err(e) = daemon.lock().await.refresh_host_addrs().await {
            warn!("refreshing host addresses: {e:#}");
        }
    }
}

/// One daemon per state dir: an exclusive lock held for the daemon's life.
fn lock_state_dir(state_dir: &Path) -> Result<Flock<fs::File>> {
    fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let path = state_dir.join("lock");
    let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another netd daemon is using state dir {}: stop it first or pass another --state-dir",
            state_dir.display()
        )
    })
}

async fn refuse_if_socket_live(socket: &Path) -> Result<()> {
    if UnixStream::connect(socket).await.is_ok() {
        bail!(
            "another netd daemon is listening on {}: stop it first or pass another --socket",
            socket.display()
        );
    }
    Ok(())
}

fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = fs::remove_file(socket); // stale socket from a killed daemon
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    // Root only: the socket grants full control of the host's networking.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket.display()))?;
    Ok(listener)
}

async fn serve(stream: UnixStream, daemon: Arc<Mutex<Daemon>>, shutdown: Arc<Notify>) {
    if let Err(e) = serve_one(stream, daemon, shutdown).await {
        debug!("client connection ended: {e:#}");
    }
}

async fn serve_one(
    stream: UnixStream,
    daemon: Arc<Mutex<Daemon>>,
    shutdown: Arc<Notify>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let response = match read_request(read).await? {
        Ok(Request::ConntrackLs { container, port }) => {
            let listed = stream_conntrack(&mut write, &daemon, container, port).await;
            match listed {
                Ok(count) => Response::Ok(serde_json::json!({ "flows": count })),
                Err(e) => Response::Err(format!("{e:#}")),
            }
        }
        Ok(request) => handle(request, daemon, shutdown).await,
        Err(refusal) => Response::Err(refusal),
    };
    write_line(&mut write, &response).await?;
    // Dropping the stream closes it, unread input (an oversized request's
    // rest) included.
    Ok(())
}

async fn write_line(write: &mut OwnedWriteHalf, response: &Response) -> Result<()> {
    let mut out = serde_json::to_vec(response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// `conntrack ls`: one `Item` line per flow, a batch of the table at a
/// time, so the daemon holds one batch however big the table is. The
/// daemon lock is held only to resolve the container: requests go on
/// while a listing streams to a slow reader.
async fn stream_conntrack(
    write: &mut OwnedWriteHalf,
    daemon: &Mutex<Daemon>,
    container: Option<String>,
    port: Option<u16>,
) -> Result<usize> {
    let (bpffs, timeouts, ips) = {
        let d = daemon.lock().await;
        let ips = container
            .as_deref()
            .map(|name| d.container_addrs(name))
            .transpose()?;
        (d.config.bpffs.clone(), d.config.ct_timeouts, ips)
    };
    let filter = Filter { ips, port };
    let ct = Conntrack::open(&bpffs)?;
    let mut reader = ct.reader();
    let mut count = 0;
    while let Some(flows) = ct.list_batch(&mut reader, &filter, &timeouts)? {
        let mut out = Vec::new();
        for flow in flows {
            serde_json::to_writer(&mut out, &Response::Item(flow))?;
            out.push(b'\n');
            count += 1;
        }
        write.write_all(&out).await?;
    }
    Ok(count)
}

/// Reads one request line, at most [`REQUEST_LIMIT`] bytes; the inner
/// `Err` is the reply for a request that cannot be served.
async fn read_request(read: OwnedReadHalf) -> Result<Result<Request, String>> {
    let mut line = Vec::new();
    BufReader::new(read.take(REQUEST_LIMIT + 1))
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() as u64 > REQUEST_LIMIT {
        return Ok(Err(format!(
            "request too large: a request is one JSON line of at most 1 MiB ({REQUEST_LIMIT} bytes); send a smaller one"
        )));
    }
    let text = match std::str::from_utf8(&line) {
        Ok(text) => text,
        Err(e) => {
            return Ok(Err(format!(
                "request is not UTF-8 JSON (invalid byte at offset {}): send one JSON request line",
                e.valid_up_to()
            )));
        }
    };
    Ok(serde_json::from_str::<Request>(text).map_err(|e| format!("malformed request: {e}")))
}

/// Serves a parsed request under the daemon lock.
async fn handle(request: Request, daemon: Arc<Mutex<Daemon>>, shutdown: Arc<Notify>) -> Response {
    let is_down = matches!(request, Request::Down);
    let started = std::time::Instant::now();
    let result = daemon.lock().await.handle(request.clone()).await;
    debug!(
        ?request,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        ok = result.is_ok(),
        "request served"
    );
    if is_down && result.is_ok() {
        shutdown.notify_one();
    }
    match result {
        Ok(value) => Response::Ok(value),
        Err(e) => Response::Err(format!("{e:#}")),
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
