//! The Unix-socket server: one JSON line in, one JSON line out.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedReadHalf},
    signal::unix::{SignalKind, signal},
    sync::{Mutex, Notify},
};
use tracing::{debug, info, warn};

use super::{Daemon, DaemonConfig};
use crate::{
    api::{Request, Response},
    conntrack::Conntrack,
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

/// Periodic upkeep: expire conntrack entries, refresh host addresses.
async fn maintain(daemon: Arc<Mutex<Daemon>>) {
    let (bpffs, timeouts, interval) = {
        let d = daemon.lock().await;
        (
            d.config.bpffs.clone(),
            d.config.ct_timeouts,
            d.config.ct_gc_interval,
        )
    };
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = daemon.lock().await.refresh_host_addrs().await {
            warn!("refreshing host addresses: {e:#}");
        }
        // The GC has its own handle on the pinned map: no daemon lock.
        let gc = Conntrack::open(&bpffs).and_then(|mut ct| ct.gc(&timeouts));
        match gc {
            Ok(0) => {}
            Ok(n) => debug!(expired = n, "conntrack gc"),
            Err(e) => warn!("conntrack gc: {e:#}"),
        }
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
        Ok(request) => handle(request, daemon, shutdown).await,
        Err(refusal) => Response::Err(refusal),
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    // Dropping the stream closes it, unread input (an oversized request's
    // rest) included.
    Ok(())
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
