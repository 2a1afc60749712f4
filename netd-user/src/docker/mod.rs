//! The Docker front door: libnetwork's remote network driver and IPAM
//! driver (moby's libnetwork docs/remote.md and docs/ipam.md), served on
//! `/run/docker/plugins/<name>.sock` as HTTP POSTs of JSON, over the
//! engine.
//!
//! Model: a Docker network is a netd network (`docker-<id12>`, Docker's
//! network id as its id); a Docker endpoint is a netd container record of
//! its own (`docker-<endpoint id12>`, the endpoint id as its id, a
//! `Runtime` sandbox: netd never sees the namespace) with one endpoint
//! whose container end stays on the host for Docker to move in at `Join`.
//! Published ports are that record's. Everything lives in netd's store,
//! since Docker never replays what it sent.

mod driver;
mod ipam;
pub mod options;
mod reconcile;
mod wire;

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, Result, bail};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use crate::engine::{
    Engine,
    error::{Error, Remedy},
};

/// Where Docker looks for plugin sockets.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// The plugin's socket: `<dir>/<name>.sock`.
pub fn socket_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Binds the plugin socket (refusing one another process serves).
pub async fn bind(socket: &Path) -> Result<UnixListener> {
    if UnixStream::connect(socket).await.is_ok() {
        bail!(
            "another process serves the Docker plugin socket {}: stop it, or give this daemon another --docker-plugin name",
            socket.display()
        );
    }
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = fs::remove_file(socket); // stale, from a killed daemon
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket.display()))?;
    Ok(listener)
}

/// Serves the plugin API until the process ends.
pub async fn serve(listener: UnixListener, engine: Engine) {
    let unjoined = reconcile::reconcile(&engine).await;
    if !unjoined.is_empty() {
        let engine = engine.clone();
        tokio::spawn(async move {
            // A grace period, not synchronisation: Docker retries a Join
            // for about 15 s, then gives the endpoint up.
            tokio::time::sleep(reconcile::JOIN_GRACE).await;
            reconcile::sweep_unjoined(&engine, &unjoined).await;
        });
    }
    let app = Router::new().fallback(dispatch).with_state(engine);
    info!("Docker network and IPAM plugin ready");
    if let Err(e) = axum::serve(listener, app).await {
        warn!("the Docker plugin server stopped: {e}");
    }
}

/// Why a call failed.
pub(crate) enum Failure {
    /// A method netd does not implement (Docker treats 404 as such).
    Unknown(String),
    /// `{"Err": ...}` (`{"Error": ...}` from the IPAM driver): what a
    /// Docker user sees.
    Err(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Err(phrase(&e))
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Err(e)
    }
}

/// An engine error in a Docker user's terms.
pub fn phrase(e: &Error) -> String {
    let hint = match e.remedy {
        None => "",
        Some(Remedy::ListContainers) => " (see `docker ps` and `netd container ls`)",
        Some(Remedy::ListNetworks) => " (see `docker network ls` and `netd network ls`)",
        Some(Remedy::ListPortmaps) => " (see `netd portmap ls`)",
        Some(Remedy::AdoptBridge) => " (-o netd.adopt_bridge=true)",
        Some(Remedy::ForcePublish) => "",
        Some(Remedy::GrowAddressPools) => {
            " (docker network create --subnet, or netd daemon --default-address-pool base=CIDR,size=N)"
        }
    };
    format!("netd: {}{hint}", e.message)
}

pub(crate) type Answer = std::result::Result<Value, Failure>;

pub(crate) fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> std::result::Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Failure::Err(format!("netd: unreadable request: {e}")))
}

async fn dispatch(State(engine): State<Engine>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    let answer = call(&engine, &method, &body).await;
    let (status, value) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(Failure::Err(err)) => {
            warn!(call = method, "Docker plugin call failed: {err}");
            (StatusCode::OK, json!({ error_key(&method): err }))
        }
        Err(Failure::Unknown(m)) => (
            StatusCode::NOT_FOUND,
            json!({ "Err": format!("netd does not implement {m}") }),
        ),
    };
    debug!(call = method, request = %String::from_utf8_lossy(&body), answer = %value, "Docker plugin call");
    (
        status,
        [("content-type", "application/vnd.docker.plugins.v1.2+json")],
        value.to_string(),
    )
        .into_response()
}

/// Where an answer carries its error: the IPAM API's responses name the
/// field `Error` (libnetwork's ipams/remote/api), the network driver's
/// `Err` (drivers/remote/api). Docker reads only its own: an IPAM error
/// under `Err` reached the user as "invalid CIDR address".
fn error_key(method: &str) -> &'static str {
    if method.starts_with("IpamDriver.") {
        "Error"
    } else {
        "Err"
    }
}

async fn call(engine: &Engine, method: &str, body: &[u8]) -> Answer {
    match method {
        "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        m if m.starts_with("NetworkDriver.") => driver::call(engine, m, body).await,
        m if m.starts_with("IpamDriver.") => ipam::call(engine, m, body).await,
        other => Err(Failure::Unknown(other.into())),
    }
}
