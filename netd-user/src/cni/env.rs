//! The runtime's side of the protocol that is not stdin: the `CNI_*`
//! environment variables and `CNI_ARGS`.

use std::{collections::BTreeMap, path::PathBuf};

use super::spec::CniError;

/// The verbs of CNI 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The `CNI_*` variables, as given (checked per verb by [`Env::require`]).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
}

impl Env {
    /// From the process's environment (empty values count as unset).
    pub fn from_process() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| get(key).filter(|v| !v.is_empty());
        Self {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
        }
    }

    pub fn verb(&self) -> Result<Verb, CniError> {
        match self.command.as_deref() {
            Some("ADD") => Ok(Verb::Add),
            Some("DEL") => Ok(Verb::Del),
            Some("CHECK") => Ok(Verb::Check),
            Some("STATUS") => Ok(Verb::Status),
            Some("GC") => Ok(Verb::Gc),
            Some("VERSION") => Ok(Verb::Version),
            Some(other) => Err(CniError::invalid_env(format!(
                "unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, STATUS, GC or VERSION"
            ))),
            None => Err(CniError::invalid_env(
                "CNI_COMMAND is not set: netd-cni is a CNI plugin, run by a container runtime (ADD, DEL, CHECK, STATUS, GC or VERSION)",
            )),
        }
    }

    /// The container id, interface name and (where the verb needs it)
    /// namespace path, checked.
    pub fn require(&self, need_netns: bool) -> Result<Attach, CniError> {
        let missing = |var: &str| {
            CniError::invalid_env(format!(
                "{var} is not set: the runtime must pass it for {}",
                self.command.as_deref().unwrap_or("this command")
            ))
        };
        let container_id = self
            .container_id
            .clone()
            .ok_or_else(|| missing("CNI_CONTAINERID"))?;
        if !valid_container_id(&container_id) {
            return Err(CniError::invalid_env(format!(
                "invalid CNI_CONTAINERID {container_id:?}: the spec allows letters, digits, '_', '.' and '-', starting with a letter or digit"
            )));
        }
        let ifname = self.ifname.clone().ok_or_else(|| missing("CNI_IFNAME"))?;
        if !valid_ifname(&ifname) {
            return Err(CniError::invalid_env(format!(
                "invalid CNI_IFNAME {ifname:?}: an interface name has 1-15 characters, no '/', ':' or white space, and is not . or .."
            )));
        }
        let netns = match (&self.netns, need_netns) {
            (Some(path), _) => Some(PathBuf::from(path)),
            (None, true) => return Err(missing("CNI_NETNS")),
            (None, false) => None,
        };
        if let Some(path) = &netns
            && need_netns
            && !path.is_absolute()
        {
            return Err(CniError::invalid_env(format!(
                "invalid CNI_NETNS {}: give the namespace's absolute path",
                path.display()
            )));
        }
        Ok(Attach {
            container_id,
            ifname,
            netns,
            args: parse_args(self.args.as_deref().unwrap_or_default())?,
        })
    }
}

/// What ADD, DEL and CHECK act on.
#[derive(Debug, Clone)]
pub struct Attach {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<PathBuf>,
    pub args: BTreeMap<String, String>,
}

/// `CNI_ARGS`: `K=V;K=V`. A malformed pair gets code 4.
pub fn parse_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CniError::invalid_env(format!(
                "invalid CNI_ARGS entry {pair:?}: expected KEY=VALUE pairs separated by ';'"
            )));
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

fn valid_container_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn verbs_and_missing_variables() {
        assert_eq!(env(&[]).verb().unwrap_err().code, 4);
        assert_eq!(env(&[("CNI_COMMAND", "FOO")]).verb().unwrap_err().code, 4);
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(e.verb().unwrap(), Verb::Add);
        assert!(e.require(true).unwrap_err().msg.contains("CNI_CONTAINERID"));
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert!(e.require(false).unwrap().netns.is_none());
        assert!(e.require(true).unwrap_err().msg.contains("CNI_NETNS"));
        let e = env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "a/b")]);
        assert_eq!(e.require(false).unwrap_err().code, 4);
    }

    #[test]
    fn cni_args() {
        let args = parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;IP=172.18.0.9").unwrap();
        assert_eq!(args["K8S_POD_NAME"], "web");
        assert_eq!(args["IP"], "172.18.0.9");
        assert_eq!(parse_args("novalue").unwrap_err().code, 4);
    }
}
