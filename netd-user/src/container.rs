//! Containers: a network namespace (or the host's, or another
//! container's), its endpoints on networks, its published ports and its
//! generated `hosts`/`resolv.conf`.
//!
//! Every `add` is all-or-nothing: a `Creating` record is saved first, then
//! the kernel objects are made; any failure (or a crash, found at the next
//! start) removes whatever was made and the record with it.

use std::{fs::File, io::Read, net::Ipv4Addr, path::PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{
    api::ContainerSpec,
    daemon::Daemon,
    endpoint, names, netns,
    portmap::PortMapping,
    state::{ContainerRecord, NameConfig, NetMode, Phase},
};

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most 64
/// characters (the name is also the namespace file name).
pub fn validate_name(name: &str) -> Result<()> {
    let valid_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > 64 || !valid_start || !valid_rest {
        bail!(
            "invalid container name {name:?}: use 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit"
        );
    }
    Ok(())
}

/// A 64-hex-digit id, like Docker's.
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The daemon's own namespace: where `--network host` containers live.
fn host_netns_path() -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", std::process::id()))
}

fn parse_mode(network: &str) -> NetMode {
    match network {
        "host" => NetMode::Host,
        "none" => NetMode::None,
        other => match other.strip_prefix("container:") {
            Some(target) => NetMode::Container(target.into()),
            None => NetMode::Bridge,
        },
    }
}

/// Docker's rule for `--hostname`, which the kernel's HOST_NAME_MAX (64)
/// also bounds: dot-separated RFC 1123 labels. Anything else (a newline
/// above all) would corrupt the generated hosts file.
const HOSTNAME_RULE: &str = "use at most 64 characters: labels of 1-63 characters [a-zA-Z0-9-], separated by dots, not starting or ending with '-'";

fn is_valid_hostname(name: &str) -> bool {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    !name.is_empty() && name.len() <= 64 && name.split('.').all(valid_label)
}

fn validate_hostname(name: &str) -> Result<()> {
    if !is_valid_hostname(name) {
        bail!("invalid hostname {name:?}: {HOSTNAME_RULE}");
    }
    Ok(())
}

/// `--add-host NAME:IP`; NAME follows the hostname rule (it becomes a
/// hosts file line).
fn parse_extra_host(spec: &str) -> Result<(String, Ipv4Addr)> {
    let (name, ip) = spec
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("bad --add-host {spec:?}: use NAME:IP"))?;
    if !is_valid_hostname(name) {
        bail!("bad --add-host {spec:?}: invalid hostname {name:?}: {HOSTNAME_RULE}");
    }
    let ip = ip
        .parse()
        .map_err(|_| anyhow!("bad --add-host {spec:?}: {ip:?} is not an IPv4 address"))?;
    Ok((name.into(), ip))
}

impl Daemon {
    pub async fn container_add(&mut self, spec: &ContainerSpec) -> Result<ContainerRecord> {
        validate_name(&spec.name)?;
        if self.store.container(&spec.name)?.is_some() {
            bail!(
                "container {0} already exists: pick another name or `netd container rm {0}` first",
                spec.name
            );
        }
        let mut record = self.plan_container(spec)?;
        let mappings = self.plan_publish(spec, &record).await?;
        self.store.put_container(&record)?;
        match self.finish_add(&mut record, mappings).await {
            Ok(()) => {
                info!(container = %record.name, mode = ?record.mode, "container added");
                Ok(record)
            }
            Err(err) => {
                self.rollback(&record).await;
                Err(err)
            }
        }
    }

    /// The record `add` will create, all choices made, nothing created.
    fn plan_container(&self, spec: &ContainerSpec) -> Result<ContainerRecord> {
        let id = random_id()?;
        let mode = parse_mode(&spec.network);
        let (netns, endpoints) = match &mode {
            NetMode::Host => (PathBuf::new(), Vec::new()),
            NetMode::Container(target) => (self.shared_netns(target)?, Vec::new()),
            NetMode::None | NetMode::Bridge => {
                let path = self.config.netns_dir.join(&spec.name);
                if path.exists() {
                    bail!(
                        "a network namespace named {} already exists at {} and is not netd's: pick another name",
                        spec.name,
                        path.display()
                    );
                }
                let endpoints = match mode {
                    NetMode::Bridge => {
                        let net = self.network(&spec.network)?;
                        vec![self.plan_endpoint(&net, "eth0", spec.ip)?]
                    }
                    _ => Vec::new(),
                };
                (path, endpoints)
            }
        };
        if spec.ip.is_some() && mode != NetMode::Bridge {
            bail!(
                "--ip needs a network: containers in mode {} get no address of their own",
                spec.network
            );
        }
        if let Some(hostname) = &spec.hostname {
            validate_hostname(hostname)?;
        }
        let names = NameConfig {
            hostname: spec
                .hostname
                .clone()
                .unwrap_or_else(|| id[..12].to_string()),
            dns: spec.dns.clone(),
            extra_hosts: spec
                .add_host
                .iter()
                .map(|h| parse_extra_host(h))
                .collect::<Result<_>>()?,
        };
        Ok(ContainerRecord {
            id,
            name: spec.name.clone(),
            mode,
            netns,
            endpoints,
            names,
            phase: Phase::Creating,
        })
    }

    /// `-p` mappings, checked against the mode and existing mappings.
    async fn plan_publish(
        &self,
        spec: &ContainerSpec,
        rec: &ContainerRecord,
    ) -> Result<Vec<PortMapping>> {
        if spec.publish.is_empty() {
            return Ok(Vec::new());
        }
        let ip = match (&rec.mode, rec.primary()) {
            (NetMode::Host, _) => bail!(
                "-p is not available with --network host: the container uses the host's own ports; drop -p"
            ),
            (NetMode::Container(target), _) => bail!(
                "-p is not available with --network container:{target}: publish the ports on {target}"
            ),
            (_, None) => bail!(
                "-p needs a network: a container with --network none has no address to publish"
            ),
            (_, Some(ep)) => {
                self.refuse_internal(&ep.network)?;
                ep.ip
            }
        };
        let mappings = spec
            .publish
            .iter()
            .map(|p| PortMapping::parse_publish(p, ip))
            .collect::<Result<Vec<_>>>()?;
        self.check_port_conflicts(&mappings)?;
        self.check_host_side(&mappings, spec.force_publish).await?;
        Ok(mappings)
    }

    /// The namespace a `container:NAME` container joins.
    fn shared_netns(&self, target: &str) -> Result<PathBuf> {
        let other = self.container(target).map_err(|_| {
            anyhow!(
                "no such container: {target} (--network container:NAME needs an existing container)"
            )
        })?;
        match other.mode {
            NetMode::Container(ref root) => self.shared_netns(root),
            NetMode::Host => bail!(
                "container {target} uses the host's namespace: use --network host instead of container:{target}"
            ),
            _ => Ok(other.netns),
        }
    }

    /// The kernel half of `add`: namespace, endpoints, ports, names, then
    /// `Ready`.
    async fn finish_add(
        &mut self,
        record: &mut ContainerRecord,
        mappings: Vec<PortMapping>,
    ) -> Result<()> {
        if record.owns_netns() {
            netns::create(&record.netns)?;
            endpoint::loopback_up(&record.netns).await?;
        }
        self.plumb_endpoints(record).await?;
        // The `Creating` record already holds the addresses mappings need.
        // Host listeners were checked (or forced) by `plan_publish`.
        if !mappings.is_empty() {
            self.portmap_add(mappings, true).await?;
        }
        self.write_names(record)?;
        record.phase = Phase::Ready;
        self.store.put_container(record)
    }

    /// Creates every endpoint of the record (eth0 carries the default route).
    async fn plumb_endpoints(&mut self, record: &mut ContainerRecord) -> Result<()> {
        for i in 0..record.endpoints.len() {
            let ep = record.endpoints[i].clone();
            record.endpoints[i].host_ifindex =
                self.plumb_endpoint(&record.netns, &ep, i == 0).await?;
        }
        Ok(())
    }

    /// Removes everything a half-made container left, and its record.
    async fn rollback(&mut self, record: &ContainerRecord) {
        if let Err(e) = self
            .portmaps_of(&record.name)
            .and_then(|r| self.unpublish(&r))
        {
            warn!(container = %record.name, "rollback could not unpublish ports: {e:#}");
        }
        if let Err(e) = self.unplumb_container(record).await {
            warn!(container = %record.name, "rollback incomplete: {e:#}");
        }
        if let Err(e) = self.store.delete_container(&record.name) {
            warn!(container = %record.name, "rollback could not delete the record: {e:#}");
        }
    }

    /// Deletes the endpoints, the namespace if netd made it, and the name
    /// files. Tolerates pieces that are already gone.
    async fn unplumb_container(&mut self, rec: &ContainerRecord) -> Result<()> {
        let mut first_error = None;
        for ep in &rec.endpoints {
            if let Err(e) = self.unplumb_endpoint(ep).await {
                warn!(container = %rec.name, "cleanup step failed: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        let others = [
            if rec.owns_netns() {
                netns::delete(&rec.netns)
            } else {
                Ok(())
            },
            names::remove(&self.names_dir(&rec.name)),
        ];
        for step in others {
            if let Err(e) = step {
                warn!(container = %rec.name, "cleanup step failed: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub async fn container_rm(&mut self, name: &str) -> Result<()> {
        let rec = self.container(name)?;
        let sharers: Vec<String> = self
            .store
            .containers()?
            .into_iter()
            .filter(|c| c.mode == NetMode::Container(name.into()))
            .map(|c| c.name)
            .collect();
        if !sharers.is_empty() {
            bail!(
                "container {name} shares its network namespace with {}: remove {} first",
                sharers.join(", "),
                if sharers.len() == 1 { "it" } else { "them" }
            );
        }
        let published = self.portmaps_of(name)?;
        self.unpublish(&published)?;
        for ep in &rec.endpoints {
            self.datapath.remove_endpoint(ep.ip, ep.host_ifindex)?;
        }
        if rec.owns_netns() {
            netns::delete(&rec.netns)?;
        }
        names::remove(&self.names_dir(name))?;
        self.store.delete_container(name)?;
        self.reclaim_veths(&rec.endpoints);
        info!(container = name, "container removed");
        Ok(())
    }

    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        self.store
            .container(name)?
            .with_context(|| format!("no such container: {name} (see `netd container ls`)"))
    }

    /// What is wrong with a container's plumbing, if anything.
    pub async fn container_problem(&self, rec: &ContainerRecord) -> Result<Option<String>> {
        if rec.mode != NetMode::Host && !netns::is_mounted(&rec.netns) {
            return Ok(Some(format!(
                "network namespace {} is missing",
                rec.netns.display()
            )));
        }
        for ep in &rec.endpoints {
            if self.netlink.link_index(&ep.host_veth).await?.is_none() {
                return Ok(Some(format!("host veth {} is missing", ep.host_veth)));
            }
        }
        Ok(None)
    }

    /// Brings the kernel in line with the records after a (re)start: rolls
    /// back half-created containers, repairs missing veths or namespaces,
    /// and re-attaches the (possibly upgraded) programs.
    pub async fn reconcile_containers(&mut self) -> Result<()> {
        let mut records = self.store.containers()?;
        // Namespace owners first: sharers depend on them.
        records.sort_by_key(|r| matches!(r.mode, NetMode::Container(_)));
        for rec in records {
            if let Err(e) = self.reconcile_container(rec.clone()).await {
                warn!(container = %rec.name, "reconcile failed: {e:#}");
            }
        }
        Ok(())
    }

    async fn reconcile_container(&mut self, mut rec: ContainerRecord) -> Result<()> {
        if rec.phase == Phase::Creating {
            warn!(container = %rec.name, "rolling back a container add interrupted by a crash");
            self.rollback(&rec).await;
            return Ok(());
        }
        match self.container_problem(&rec).await? {
            None => {
                for ep in rec.endpoints.clone() {
                    let net = self.network(&ep.network)?;
                    self.attach_endpoint(&net, &ep, ep.host_ifindex).await?;
                }
                Ok(())
            }
            Some(problem) if rec.owns_netns() => {
                warn!(container = %rec.name, "{problem}; repairing the container's plumbing");
                for ep in rec.endpoints.clone() {
                    self.unplumb_endpoint(&ep).await?;
                }
                if !netns::is_mounted(&rec.netns) {
                    netns::delete(&rec.netns)?;
                    netns::create(&rec.netns)?;
                    endpoint::loopback_up(&rec.netns).await?;
                }
                self.plumb_endpoints(&mut rec).await?;
                self.store.put_container(&rec)?;
                info!(container = %rec.name, "repaired");
                Ok(())
            }
            Some(problem) => {
                warn!(container = %rec.name, "{problem}; it shares another container's namespace, which must be repaired first");
                Ok(())
            }
        }
    }

    fn mode_name(rec: &ContainerRecord) -> String {
        match &rec.mode {
            NetMode::Bridge => "bridge".into(),
            NetMode::Host => "host".into(),
            NetMode::None => "none".into(),
            NetMode::Container(other) => format!("container:{other}"),
        }
    }

    /// The JSON `container inspect` prints. Top-level address fields are
    /// those of eth0 (empty without a network).
    pub async fn container_json(&self, rec: &ContainerRecord) -> Result<Value> {
        let status = match self.container_problem(rec).await? {
            None => "running".to_string(),
            Some(problem) => problem,
        };
        let mut interfaces = Vec::new();
        for ep in &rec.endpoints {
            let net = self.network(&ep.network)?;
            interfaces.push(json!({
                "name": ep.ifname,
                "network": ep.network,
                "ip": ep.ip,
                "prefix_len": net.subnet.prefix(),
                "gateway": net.gateway,
                "mac": ep.mac,
                "host_veth": ep.host_veth,
                "host_ifindex": ep.host_ifindex,
            }));
        }
        let primary = interfaces.first().cloned().unwrap_or(Value::Null);
        let names_dir = self.names_dir(&rec.name);
        Ok(json!({
            "id": rec.id,
            "name": rec.name,
            "status": status,
            "mode": Self::mode_name(rec),
            "netns": if rec.mode == NetMode::Host { host_netns_path() } else { rec.netns.clone() },
            "network": primary.get("network").cloned().unwrap_or_else(|| Value::String(Self::mode_name(rec))),
            "ip": primary.get("ip").cloned().unwrap_or(Value::Null),
            "prefix_len": primary.get("prefix_len").cloned().unwrap_or(Value::Null),
            "mac": primary.get("mac").cloned().unwrap_or(Value::Null),
            "gateway": primary.get("gateway").cloned().unwrap_or(Value::Null),
            "host_veth": primary.get("host_veth").cloned().unwrap_or(Value::Null),
            "host_ifindex": primary.get("host_ifindex").cloned().unwrap_or(Value::Null),
            "interfaces": interfaces,
            "hostname": rec.names.hostname,
            "hosts_path": names_dir.join("hosts"),
            "resolv_conf_path": names_dir.join("resolv.conf"),
        }))
    }

    /// Removes every container's plumbing (used by `netd down`).
    pub async fn unplumb_all_containers(&mut self) -> Result<()> {
        let published = self.store.portmaps()?;
        self.unpublish(&published)?;
        for rec in self.store.containers()? {
            self.unplumb_container(&rec).await?;
            self.store.delete_container(&rec.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        for ok in ["c1", "web.1", "a_b-c", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bad/name",
            "-lead",
            ".hidden",
            "sp ace",
            &"x".repeat(65),
            "ümlaut",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_64_hex() {
        let id = random_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn modes_parse_like_docker() {
        assert_eq!(parse_mode("bridge"), NetMode::Bridge);
        assert_eq!(parse_mode("mynet"), NetMode::Bridge);
        assert_eq!(parse_mode("host"), NetMode::Host);
        assert_eq!(parse_mode("none"), NetMode::None);
        assert_eq!(
            parse_mode("container:web"),
            NetMode::Container("web".into())
        );
    }

    #[test]
    fn extra_hosts_parse() {
        assert_eq!(
            parse_extra_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), Ipv4Addr::new(10, 0, 0, 5))
        );
        assert!(parse_extra_host("db").is_err());
        assert!(parse_extra_host(":10.0.0.5").is_err());
        assert!(parse_extra_host("db:x").is_err());
        assert!(parse_extra_host("db\n10.6.6.6 evil:10.0.0.5").is_err());
        assert!(parse_extra_host("d b:10.0.0.5").is_err());
    }

    #[test]
    fn hostnames_follow_rfc_1123_and_host_name_max() {
        let label63 = "a".repeat(63);
        let name64 = format!("{}.b", "a".repeat(62));
        for ok in ["web", "web-1.example", "A1", &label63, &name64] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        let label64 = "a".repeat(64);
        let name65 = format!("{}.bc", "a".repeat(62));
        for bad in [
            "", "-web", "web-", "a..b", ".a", "a.", "sp ace", "web\nx", "a_b", &label64, &name65,
        ] {
            let err = validate_hostname(bad).unwrap_err().to_string();
            assert!(err.contains("64 characters"), "{bad}: {err}");
        }
    }
}
