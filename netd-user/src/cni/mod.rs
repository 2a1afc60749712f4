//! The CNI plugin (`netd-cni`, installed as `netd` in a runtime's CNI bin
//! dir): a thin adapter from CNI 1.1.0 (results for 0.3.0 through 1.1.0)
//! to the daemon's socket API. The daemon stays the one owner of the maps
//! and the state; the plugin only translates.
//!
//! - `spec`: the wire types (configuration, result, error), versions;
//! - `env`: the `CNI_*` environment and `CNI_ARGS`;
//! - `client`: socket API calls that keep the engine's error kinds;
//! - `plugin`: the verbs;
//! - `sandbox`: what CHECK looks at inside the container's namespace;
//! - `install`: `netd cni install`.

mod client;
pub mod env;
pub mod install;
mod plugin;
mod sandbox;
pub mod spec;

use std::io::{Read, Write};

use serde_json::Value;

use self::{
    env::{Env, Verb},
    spec::{CniError, NetConf, code},
};

/// Runs one invocation as a runtime makes it: environment, stdin,
/// stdout; returns the exit code.
pub fn main() -> i32 {
    let env = Env::from_process();
    let mut stdin = Vec::new();
    let (out, failed) = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => match run(&env, &stdin) {
            Ok(out) => (out, false),
            Err(e) => (serde_json::to_value(e).ok(), true),
        },
        Err(e) => {
            let e = CniError::new(code::IO, format!("reading stdin: {e}"));
            (serde_json::to_value(e).ok(), true)
        }
    };
    if let Some(out) = out {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
    if failed { 1 } else { 0 }
}

/// One verb: what goes to stdout on success (ADD's result, VERSION's
/// versions), or the error to print.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let verb = env.verb()?;
    if verb == Verb::Version {
        return Ok(Some(spec::version_info()));
    }
    let conf = NetConf::decode(stdin)?;
    let version = conf.version()?.to_owned();
    let in_version = |mut e: CniError| {
        e.cni_version = version.clone();
        e
    };
    let out = match verb {
        Verb::Add => {
            let att = env.require(true).map_err(in_version)?;
            Some(plugin::add(&conf, &version, &att).map_err(in_version)?)
        }
        Verb::Del => {
            let att = env.require(false).map_err(in_version)?;
            plugin::del(&conf, &att).map_err(in_version)?;
            None
        }
        Verb::Check => {
            let att = env.require(true).map_err(in_version)?;
            plugin::check(&conf, &version, &att).map_err(in_version)?;
            None
        }
        Verb::Status => {
            plugin::status(&conf).map_err(in_version)?;
            None
        }
        Verb::Gc => {
            plugin::gc(&conf).map_err(in_version)?;
            None
        }
        Verb::Version => unreachable!("answered above"),
    };
    Ok(out)
}
