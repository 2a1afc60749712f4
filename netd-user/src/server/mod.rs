//! The daemon's front door: the Unix-socket server of the socket API (one
//! JSON line in, one JSON line out), over the engine. It renders the
//! engine's records (`api::render`), phrases its errors for the CLI, and
//! runs the upkeep: conntrack GC, host address changes, drop warnings.

mod config;
mod daemon;
mod down;
mod maintain;

use std::{collections::BTreeMap, fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use netd_common::{Ct6Key, CtKey};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    signal::unix::{SignalKind, signal},
    sync::Notify,
};
use tracing::{debug, info, warn};

pub use config::{
    CT_MAX_DEFAULT, CT_MAX_LIMIT, CT_MAX_MIN, CT6_MAX_DEFAULT, DaemonConfig, NatPorts,
};
pub use down::down_offline;

use self::daemon::Daemon;
use crate::{
    api::{Request, Response, render},
    engine::{
        error::{Error, Result as EngineResult},
        model::{PSEUDO_NETWORKS, Phase},
    },
    kernel::conntrack::{Conntrack, Filter, Tuple},
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
    let plugin_socket = config.docker_plugin.clone();
    let daemon = Arc::new(Daemon::start(config).await?);
    let listener = bind(&socket)?;
    if let Some(path) = &plugin_socket {
        let plugin = crate::docker::bind(path).await?;
        tokio::spawn(crate::docker::serve(plugin, daemon.engine.clone()));
        info!(socket = %path.display(), "Docker plugin listening");
    }
    tokio::spawn(maintain::maintain(daemon.clone()));
    tokio::spawn(maintain::follow_host_addresses(daemon.clone()));
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
    if let Some(path) = &plugin_socket {
        let _ = fs::remove_file(path);
    }
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

async fn serve(stream: UnixStream, daemon: Arc<Daemon>, shutdown: Arc<Notify>) {
    if let Err(e) = serve_one(stream, daemon, shutdown).await {
        debug!("client connection ended: {e:#}");
    }
}

async fn serve_one(stream: UnixStream, daemon: Arc<Daemon>, shutdown: Arc<Notify>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let response = match read_request(read).await? {
        Ok(Request::ConntrackLs { container, port }) => {
            let listed = stream_conntrack(&mut write, &daemon, container, port).await;
            match listed {
                Ok(count) => Response::Ok(json!({ "flows": count })),
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
/// time, so the daemon holds one batch however big the table is; other
/// requests go on while a listing streams to a slow reader.
async fn stream_conntrack(
    write: &mut OwnedWriteHalf,
    daemon: &Daemon,
    container: Option<String>,
    port: Option<u16>,
) -> Result<usize> {
    let ips = container
        .as_deref()
        .map(|name| container_addrs(daemon, name))
        .transpose()?;
    let filter = Filter { ips, port };
    let v4 = stream_family::<CtKey>(write, daemon, &filter).await?;
    Ok(v4 + stream_family::<Ct6Key>(write, daemon, &filter).await?)
}

/// The flows of one family's tables, for [`stream_conntrack`].
async fn stream_family<K: Tuple>(
    write: &mut OwnedWriteHalf,
    daemon: &Daemon,
    filter: &Filter,
) -> Result<usize> {
    let ct = Conntrack::<K>::open(&daemon.config.bpffs)?;
    let mut reader = ct.reader();
    let mut count = 0;
    while let Some(flows) = ct.list_batch(&mut reader, filter, &daemon.config.ct_timeouts)? {
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

/// The endpoint addresses (both families) of a container, for
/// `conntrack ls --container`.
fn container_addrs(daemon: &Daemon, name: &str) -> Result<Vec<std::net::IpAddr>> {
    let c = daemon
        .engine
        .container(name)
        .map_err(|e| anyhow::anyhow!(render::error_line(&e)))?;
    if c.endpoints.is_empty() {
        bail!(
            "container {name} has no address of its own (network mode {}): its flows cannot be told apart; use --port or list all flows",
            c.sandbox.mode_name()
        );
    }
    Ok(c.endpoints
        .iter()
        .flat_map(|ep| std::iter::once(ep.ip).chain(ep.ip6))
        .collect())
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

/// Serves a parsed request.
async fn handle(request: Request, daemon: Arc<Daemon>, shutdown: Arc<Notify>) -> Response {
    let is_down = matches!(request, Request::Down);
    let started = std::time::Instant::now();
    let op = format!("{request:?}");
    let result = execute(request, &daemon).await;
    debug!(
        request = op,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        ok = result.is_ok(),
        "request served"
    );
    if is_down && result.is_ok() {
        shutdown.notify_one();
    }
    match result {
        Ok(value) => Response::Ok(value),
        Err(Failure::Engine(e)) => Response::Failed {
            err: render::error_line(&e),
            kind: e.kind,
        },
        Err(Failure::Other(e)) => Response::Err(format!("{e:#}")),
    }
}

/// Why a request failed: in the engine (with a kind), or around it.
enum Failure {
    Engine(Error),
    Other(anyhow::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

async fn execute(request: Request, daemon: &Daemon) -> Result<Value, Failure> {
    let engine = &daemon.engine;
    Ok(match request {
        Request::Status => status(daemon)?,
        Request::ContainerAdd(req) => {
            let c = engine.add_container(req).await?;
            container_json(daemon, &c).await?
        }
        Request::ContainerLs => {
            let mut out = Vec::new();
            for c in engine.containers() {
                out.push(container_json(daemon, &c).await?);
            }
            Value::Array(out)
        }
        Request::ContainerInspect { container } => {
            let c = engine.find_container(&container)?;
            container_json(daemon, &c).await?
        }
        Request::ContainerRm { container } => {
            let c = engine.find_container(&container)?;
            engine.remove_container(&container).await?;
            json!({ "removed": c.name, "id": c.id.0 })
        }
        Request::NetworkCreate(req) => {
            let net = engine.create_network(req).await?;
            render::network_inspect(&net, &[])
        }
        Request::NetworkLs => render::network_list(&engine.networks(), &PSEUDO_NETWORKS),
        Request::NetworkInspect { name } => network_inspect(daemon, &name)?,
        Request::NetworkRm { name } => {
            engine.remove_network(&name).await?;
            json!({ "removed": name })
        }
        Request::NetworkConnect {
            container,
            endpoint,
        } => {
            let c = engine.connect(&container, endpoint).await?;
            container_json(daemon, &c).await?
        }
        Request::NetworkDisconnect {
            container,
            endpoint,
        } => {
            let c = engine.disconnect(&container, &endpoint).await?;
            container_json(daemon, &c).await?
        }
        Request::PortmapAdd { mappings, force } => {
            let records = engine.publish(mappings, force).await?;
            portmaps_json(daemon, &records)
        }
        Request::PortmapLs => portmaps_json(daemon, &engine.portmaps()),
        Request::PortmapRm { selector } => {
            let record = engine.unpublish(&selector).await?;
            portmaps_json(daemon, &[record])
        }
        // Streamed by the server, before it gets here.
        Request::ConntrackLs { .. } => {
            return Err(anyhow::anyhow!("conntrack ls is a streamed request").into());
        }
        Request::Stats => render::stats(&engine.stats()?),
        Request::Down => {
            engine.down().await?;
            down::remove_leftovers(&daemon.config.state_dir, &daemon.config.bpffs)?;
            json!({ "down": true })
        }
    })
}

async fn container_json(
    daemon: &Daemon,
    c: &crate::engine::model::Container,
) -> EngineResult<Value> {
    let engine = &daemon.engine;
    // An add under way: its record is there before its interfaces are.
    let problem = match c.phase {
        Phase::Creating => Some("creating".to_string()),
        Phase::Ready => engine.container_problem(c).await?,
    };
    let networks: BTreeMap<_, _> = engine
        .networks()
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect();
    let netns = engine.netns_of(c);
    Ok(render::container(
        c,
        problem,
        netns.as_deref(),
        &networks,
        &daemon.names_dir(&c.name),
    ))
}

fn network_inspect(daemon: &Daemon, name: &str) -> EngineResult<Value> {
    let containers = daemon.engine.containers();
    if let Some((_, driver)) = PSEUDO_NETWORKS.iter().find(|(n, _)| *n == name) {
        return Ok(render::pseudo_network_inspect(name, driver, &containers));
    }
    let net = daemon.engine.network(name)?;
    Ok(render::network_inspect(&net, &containers))
}

fn portmaps_json(daemon: &Daemon, records: &[crate::engine::model::PortMap]) -> Value {
    let containers = daemon.engine.containers();
    let ip6s = containers
        .iter()
        .flat_map(|c| &c.endpoints)
        .filter_map(|e| Some((e.ip, e.ip6?)))
        .collect();
    let names: BTreeMap<String, String> =
        containers.into_iter().map(|c| (c.id.0, c.name)).collect();
    render::portmaps(records, &names, &ip6s)
}

fn status(daemon: &Daemon) -> EngineResult<Value> {
    let stats = daemon.engine.stats()?;
    let counter = |index: netd_common::StatIndex| {
        stats
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(0, |(_, c)| c.packets)
    };
    let config = &daemon.config;
    // Two entries per flow, in two tables (new and assured flows).
    let max_entries = u64::from(config.ct_max_flows) * 2 * 2;
    let max_entries6 = u64::from(config.ct6_max_flows) * 2 * 2;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state_dir": config.state_dir,
        "bpffs": config.bpffs,
        "containers": daemon.engine.read(|s| s.containers.len()),
        "conntrack": {
            "entries": daemon.ct_entries(false),
            "max_entries": max_entries,
            "max_flows": config.ct_max_flows,
            "drop_ct_full": counter(netd_common::StatIndex::DropCtFull),
            "drop_no_port": counter(netd_common::StatIndex::DropNoPort),
            "ipv6": {
                "entries": daemon.ct_entries(true),
                "max_entries": max_entries6,
                "max_flows": config.ct6_max_flows,
            },
        },
    }))
}
