//! The eBPF datapath loader: loads the object built from `netd-ebpf`, pins
//! its maps under the bpffs dir (with BTF, so `bpftool map dump` shows field
//! names) and attaches the tcx programs through pinned links, so packets keep
//! flowing while the daemon is stopped or restarting.

use std::{
    collections::HashSet,
    fs,
    hash::Hash,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{Array, HashMap, MapData, MapError, MapInfo, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::TcAttachOptions,
    },
};
use netd_common::{
    BridgeValue, Counter, DatapathConfig, Endpoint6Value, EndpointValue, PortMap6Key,
    PortMap6Value, PortMapKey, PortMapValue, Service6Key, ServiceKey, StatIndex, VethValue,
    map_names,
};
use nix::{
    fcntl::{Flock, FlockArg},
    mount::{MsFlags, mount},
    sys::statfs::statfs,
};

use super::{bpflink, migrate};
use crate::engine::{
    error::{Error as EngineError, KernelContext, Result as EngineResult},
    kernel::{Datapath, DatapathBridge, DatapathEndpoint, PortEntry, Service},
    model::Proto,
};

pub(super) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd"));

const PROG_UPLINK_INGRESS: &str = netd_common::names::programs::UPLINK_INGRESS;
const PROG_FROM_CONTAINER: &str = netd_common::names::programs::FROM_CONTAINER;
const CLASSIFIERS: [&str; 2] = netd_common::names::programs::CLASSIFIERS;
/// Socket hooks for host-local access to published ports.
const SOCK_HOOKS: [&str; 8] = netd_common::names::programs::SOCK_HOOKS;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The loaded object. Map and program handles need `&mut Ebpf`; the lock
/// is held for one map operation at a time, so counters can be read while
/// an engine operation is under way.
pub struct BpfDatapath {
    objects: Mutex<Objects>,
}

struct Objects {
    ebpf: Ebpf,
    bpffs: PathBuf,
}

impl BpfDatapath {
    /// See [`Objects::load`].
    pub fn load(bpffs: &Path, ct_max_flows: u32, ct6_max_flows: u32) -> Result<Self> {
        Ok(Self {
            objects: Mutex::new(Objects::load(bpffs, ct_max_flows, ct6_max_flows)?),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Objects) -> Result<T>) -> Result<T> {
        match self.objects.lock() {
            Ok(mut objects) => f(&mut objects),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Attaches the published-port / reverse-NAT program to an uplink.
    pub fn attach_uplink(&self, ifname: &str) -> Result<()> {
        self.with(|o| o.attach_uplink(ifname))
    }

    /// Attaches the socket hooks to the cgroup v2 root.
    pub fn attach_sock_hooks(&self, cgroup: &Path) -> Result<()> {
        self.with(|o| o.attach_sock_hooks(cgroup))
    }

    pub fn set_config(&self, config: DatapathConfig) -> Result<()> {
        self.with(|o| o.set_config(config))
    }
}

impl Objects {
    /// Loads the programs and opens (or creates and pins) the maps; the
    /// conntrack tables hold `ct_max_flows` flows (two entries each), the
    /// IPv6 ones `ct6_max_flows`.
    pub fn load(bpffs: &Path, ct_max_flows: u32, ct6_max_flows: u32) -> Result<Self> {
        ensure_bpffs(bpffs)?;
        fs::create_dir_all(bpffs.join("links"))
            .with_context(|| format!("creating {}/links", bpffs.display()))?;
        let sizes = [
            (
                map_names::CT_TABLES,
                ct_max_flows.saturating_mul(2),
                "--ct-max",
            ),
            (
                map_names::CT6_TABLES,
                ct6_max_flows.saturating_mul(2),
                "--ct6-max",
            ),
        ];
        let overrides: Vec<(&str, u32)> = sizes
            .iter()
            .flat_map(|(tables, entries, _)| tables.iter().map(|t| (*t, *entries)))
            .collect();
        let declared = migrate::declared(OBJECT, &overrides)?;
        let flag_sized: Vec<&str> = overrides.iter().map(|(name, _)| *name).collect();
        // Every refusal comes before anything changes.
        let plan = migrate::Plan::prepare(bpffs, &declared, &flag_sized)?;
        for (tables, entries, flag) in sizes {
            // A table being converted is created anew, at the wanted size.
            let kept: Vec<&str> = tables.into_iter().filter(|t| !plan.converts(t)).collect();
            refuse_conntrack_resize(bpffs, &kept, entries, flag)?;
        }
        plan.set_aside().inspect_err(|_| plan.roll_back())?;
        let ebpf = load_object(&overrides, bpffs, &plan).inspect_err(|_| plan.roll_back())?;
        Ok(Self {
            ebpf,
            bpffs: bpffs.to_owned(),
        })
    }

    /// Attaches the container program to a container's host-side veth.
    /// Ingress only: traffic into containers is counted where eBPF delivers
    /// it, and every tcx attach costs an RCU grace period (~20 ms here).
    pub fn attach_veth(&mut self, ifname: &str) -> Result<()> {
        let ingress = self.link_pin(ifname, "ingress");
        self.attach(PROG_FROM_CONTAINER, ifname, TcAttachType::Ingress, &ingress)
    }

    /// Attaches the published-port / reverse-NAT program to an uplink.
    pub fn attach_uplink(&mut self, ifname: &str) -> Result<()> {
        let pin = self.link_pin(&format!("uplink-{ifname}"), "ingress");
        self.attach(PROG_UPLINK_INGRESS, ifname, TcAttachType::Ingress, &pin)
    }

    /// Drops the pinned link of a veth (detaching if it still exists).
    pub fn detach_veth(&self, ifname: &str) -> Result<()> {
        remove_if_present(&self.veth_link_pin(ifname))
    }

    /// Removes pinned veth links whose veth is not in `owned`.
    pub fn unpin_orphan_veth_links(&self, owned: &HashSet<String>) -> Result<()> {
        let dir = self.bpffs.join("links");
        let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(veth) = file.strip_suffix("-ingress")
                && veth.starts_with("veth")
                && !owned.contains(veth)
            {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Where the link of a veth's program is pinned.
    pub fn veth_link_pin(&self, ifname: &str) -> PathBuf {
        self.link_pin(ifname, "ingress")
    }

    fn link_pin(&self, ifname: &str, direction: &str) -> PathBuf {
        self.bpffs
            .join("links")
            .join(format!("{ifname}-{direction}"))
    }

    /// Attaches `prog` to `ifname` through a pinned tcx link. An existing
    /// pinned link is updated in place (atomic program replacement, e.g.
    /// after an upgrade); a stale one (its device is gone) is replaced.
    fn attach(&mut self, prog: &str, ifname: &str, ty: TcAttachType, pin: &Path) -> Result<()> {
        let program = classifier(&mut self.ebpf, prog)?;
        let replaced = PinnedLink::from_pin(pin)
            .ok()
            .and_then(|old| FdLink::from(old).try_into().ok())
            .and_then(|link| program.attach_to_link(link).ok());
        let link_id = match replaced {
            Some(id) => id,
            None => {
                remove_if_present(pin)?;
                let order = TcAttachOptions::TcxOrder(LinkOrder::default());
                program
                    .attach_with_options(ifname, ty, order)
                    .with_context(|| format!("attaching {prog} to {ifname} ({ty:?})"))?
            }
        };
        let link: FdLink = program
            .take_link(link_id)
            .context("taking ownership of the tcx link")?
            .try_into()
            .context("tcx link has no fd")?;
        pin_link(link, pin)
    }

    /// Attaches the socket hooks to the cgroup v2 root (as bpf links, which
    /// always coexist with other programs there; link_create takes no
    /// attach flags). A link pinned by an earlier run gets this run's
    /// program in place, as the tcx links do: after an upgrade the new
    /// hooks run, with no moment in which host sockets go unredirected.
    pub fn attach_sock_hooks(&mut self, cgroup: &Path) -> Result<()> {
        for name in SOCK_HOOKS {
            let pin = self.bpffs.join("links").join(format!("cgroup-{name}"));
            if PinnedLink::from_pin(&pin).is_ok() {
                let program = sock_hook(&mut self.ebpf, name)?;
                let fd = program
                    .fd()
                    .with_context(|| format!("program {name} is not loaded"))?;
                bpflink::update_pinned(&pin, fd.as_fd())?;
                continue;
            }
            let dir = fs::File::open(cgroup)
                .with_context(|| format!("opening cgroup {}", cgroup.display()))?;
            let program = sock_hook(&mut self.ebpf, name)?;
            let id = program
                .attach(dir, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to cgroup {}", cgroup.display()))?;
            let link: FdLink = program
                .take_link(id)
                .context("taking ownership of the cgroup link")?
                .try_into()
                .context("cgroup link has no fd")?;
            pin_link(link, &pin)?;
        }
        Ok(())
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }

    fn hash<K: Pod, V: Pod>(&mut self, name: &str) -> Result<HashMap<&mut MapData, K, V>> {
        HashMap::try_from(self.map_mut(name)?).with_context(|| format!("opening map {name}"))
    }

    /// An endpoint's two entries: by address (delivery to it) and by its
    /// host veth's ifindex (what may enter from that veth).
    pub fn set_endpoint(
        &mut self,
        ip: Ipv4Addr,
        value: EndpointValue,
        veth: VethValue,
        v6: Option<(Ipv6Addr, Endpoint6Value)>,
    ) -> Result<()> {
        if let Some((ip6, ep6)) = v6 {
            self.hash::<[u8; 16], Endpoint6Value>(map_names::ENDPOINTS6)?
                .insert(ip6.octets(), ep6, 0)
                .with_context(|| format!("adding endpoint {ip6} to the datapath"))?;
            // The eBPF FIB lookups of its packets need the veth's IPv6
            // forwarding on (all.forwarding stays off: the stack routes
            // no IPv6).
            super::host::enable_ipv6_forwarding_on(value.ifindex)?;
        }
        self.hash(map_names::VETHS)?
            .insert(value.ifindex, veth, 0)
            .with_context(|| format!("adding the veth of endpoint {ip} to the datapath"))?;
        self.hash(map_names::ENDPOINTS)?
            .insert(u32::from(ip).to_be(), value, 0)
            .with_context(|| format!("adding endpoint {ip} to the datapath"))
    }

    /// Removes both entries of an endpoint; absent ones are fine, and the
    /// second is removed even if the first fails.
    pub fn remove_endpoint(
        &mut self,
        ip: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
        veth_ifindex: u32,
    ) -> Result<()> {
        let by_ip6 = match ip6 {
            Some(ip6) => self
                .hash::<[u8; 16], Endpoint6Value>(map_names::ENDPOINTS6)
                .and_then(|mut map| ignore_missing(map.remove(&ip6.octets())))
                .with_context(|| format!("removing endpoint {ip6} from the datapath")),
            None => Ok(()),
        };
        let by_ip = self
            .hash::<u32, EndpointValue>(map_names::ENDPOINTS)
            .and_then(|mut map| ignore_missing(map.remove(&u32::from(ip).to_be())))
            .with_context(|| format!("removing endpoint {ip} from the datapath"));
        let by_veth = self
            .hash::<u32, VethValue>(map_names::VETHS)
            .and_then(|mut map| ignore_missing(map.remove(&veth_ifindex)))
            .with_context(|| format!("removing the veth of endpoint {ip} from the datapath"));
        by_ip.and(by_veth).and(by_ip6)
    }

    pub fn set_bridge(&mut self, ifindex: u32, value: BridgeValue) -> Result<()> {
        self.hash(map_names::BRIDGES)?
            .insert(ifindex, value, 0)
            .context("adding a bridge to the datapath")
    }

    pub fn set_config(&mut self, config: DatapathConfig) -> Result<()> {
        let mut array: Array<&mut MapData, DatapathConfig> =
            Array::try_from(self.map_mut(map_names::CONFIG)?).context("opening the config map")?;
        array
            .set(0, config, 0)
            .context("writing the datapath config")
    }

    /// Makes the host-address map hold exactly `addrs`.
    pub fn sync_host_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let wanted = addrs.iter().map(|ip| u32::from(*ip).to_be()).collect();
        self.sync_set(map_names::HOST_ADDRS, &wanted)
            .context("syncing the host addresses")
    }

    pub fn sync_host_addrs6(&mut self, addrs: &[Ipv6Addr]) -> Result<()> {
        let wanted = addrs.iter().map(Ipv6Addr::octets).collect();
        self.sync_set(map_names::HOST_ADDRS6, &wanted)
            .context("syncing the host's IPv6 addresses")
    }

    pub fn insert_portmaps(&mut self, entries: &[(PortMapKey, PortMapValue)]) -> Result<()> {
        let mut map = self.hash::<PortMapKey, PortMapValue>(map_names::PORTMAPS)?;
        for (key, value) in entries {
            map.insert(key, value, 0)
                .context("adding a published port to the datapath")?;
        }
        Ok(())
    }

    /// Published ports on the host's IPv6 addresses.
    pub fn insert_portmaps6(&mut self, entries: &[(PortMap6Key, PortMap6Value)]) -> Result<()> {
        let mut map = self.hash::<PortMap6Key, PortMap6Value>(map_names::PORTMAPS6)?;
        for (key, value) in entries {
            map.insert(key, value, 0)
                .context("adding a published IPv6 port to the datapath")?;
        }
        Ok(())
    }

    /// Removes published IPv6 ports; absent ones are fine.
    pub fn remove_portmaps6(&mut self, keys: &[PortMap6Key]) -> Result<()> {
        let mut map = self.hash::<PortMap6Key, PortMap6Value>(map_names::PORTMAPS6)?;
        let mut first_error = None;
        for key in keys {
            if let Err(e) = ignore_missing(map.remove(key)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.context("removing a published IPv6 port")))
    }

    /// Removes published ports; absent ones are fine, and one failure does
    /// not stop the others.
    pub fn remove_portmaps(&mut self, keys: &[PortMapKey]) -> Result<()> {
        let mut map = self.hash::<PortMapKey, PortMapValue>(map_names::PORTMAPS)?;
        let mut first_error = None;
        for key in keys {
            if let Err(e) = ignore_missing(map.remove(key)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.context("removing a published port")))
    }

    /// Makes `NETD_SERVICES` and `NETD_SERVICES6` hold exactly `services`
    /// and `services6`.
    pub fn sync_services(
        &mut self,
        services: &HashSet<ServiceKey>,
        services6: &HashSet<Service6Key>,
    ) -> Result<()> {
        self.sync_set(map_names::SERVICES, services)
            .context("syncing the published services")?;
        self.sync_set(map_names::SERVICES6, services6)
            .context("syncing the published IPv6 services")
    }

    /// Makes the set-like map `name` (key -> 1) hold exactly `wanted`.
    fn sync_set<K: Pod + Eq + Hash>(&mut self, name: &str, wanted: &HashSet<K>) -> Result<()> {
        let mut map = self.hash::<K, u32>(name)?;
        let stale: Vec<K> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in stale {
            ignore_missing(map.remove(&key))?;
        }
        for key in wanted {
            map.insert(key, 1, 0)?;
        }
        Ok(())
    }

    /// Every published-port entry in the kernel.
    pub fn portmap_keys(&mut self) -> Result<Vec<PortMapKey>> {
        let map = self.hash::<PortMapKey, PortMapValue>(map_names::PORTMAPS)?;
        Ok(map.keys().filter_map(Result::ok).collect())
    }

    pub fn portmap6_keys(&mut self) -> Result<Vec<PortMap6Key>> {
        let map = self.hash::<PortMap6Key, PortMap6Value>(map_names::PORTMAPS6)?;
        Ok(map.keys().filter_map(Result::ok).collect())
    }

    /// Sums the per-CPU counters.
    pub fn stats(&self) -> Result<Vec<(StatIndex, Counter)>> {
        let map = self
            .ebpf
            .map(map_names::STATS)
            .ok_or_else(|| anyhow!("map {} missing from the object", map_names::STATS))?;
        let stats: PerCpuArray<&MapData, Counter> =
            PerCpuArray::try_from(map).context("opening the stats map")?;
        // A shorter stats map pinned by an older version is converted at
        // load (`migrate`); should one be shorter all the same, its missing
        // counters read as zero rather than failing.
        let len = stats.len();
        StatIndex::ALL
            .iter()
            .map(|&index| {
                if index as u32 >= len {
                    return Ok((index, Counter::default()));
                }
                let per_cpu = stats
                    .get(&(index as u32), 0)
                    .with_context(|| format!("reading counter {}", index.name()))?;
                let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                });
                Ok((index, sum))
            })
            .collect()
    }
}

/// Loads the object over the pins in `bpffs` (the maps `plan` converts
/// are created anew and get their converted entries) and its programs.
fn load_object(sizes: &[(&str, u32)], bpffs: &Path, plan: &migrate::Plan) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for name in map_names::ALL {
        loader.map_pin_path(name, bpffs.join(name));
    }
    for (table, entries) in sizes {
        loader.map_max_entries(table, *entries);
    }
    let mut ebpf = loader.load(OBJECT).context("loading the eBPF object")?;
    for name in CLASSIFIERS {
        classifier(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading eBPF program {name} (verifier)"))?;
    }
    for name in SOCK_HOOKS {
        sock_hook(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading eBPF program {name} (verifier)"))?;
    }
    // Only once the programs load: a failed start puts the old pins back.
    plan.finish(&mut ebpf)?;
    Ok(ebpf)
}

/// aya reuses a pinned map whatever size the loader asks for, so a
/// changed `--ct-max` would silently not apply. A map cannot be resized,
/// and replacing it would drop every live flow: refuse instead.
fn refuse_conntrack_resize(
    bpffs: &Path,
    tables: &[&str],
    wanted_entries: u32,
    flag: &str,
) -> Result<()> {
    for table in tables {
        let pin = bpffs.join(table);
        if !pin.exists() {
            continue;
        }
        let pinned = MapInfo::from_pin(&pin)
            .with_context(|| format!("reading the size of the pinned map {}", pin.display()))?
            .max_entries();
        if pinned != wanted_entries {
            anyhow::bail!(
                "the pinned conntrack map {} holds {} flows but {flag} asks for {}: resizing would drop every live flow; restart with {flag} {}, or run `netd down` first",
                pin.display(),
                pinned / 2,
                wanted_entries / 2,
                pinned / 2,
            );
        }
    }
    Ok(())
}

/// The flows the pinned conntrack table `table` holds (two entries each),
/// also while it waits aside to be converted; `None` when there is none
/// (or it cannot be read: the start then reports it).
pub fn pinned_flows(bpffs: &Path, table: &str) -> Option<u32> {
    [bpffs.join(table), migrate::aside(bpffs, table)]
        .iter()
        .filter(|pin| pin.exists())
        .find_map(|pin| MapInfo::from_pin(pin).ok())
        .map(|info| info.max_entries() / 2)
}

/// A removal of an entry that is already gone succeeded. aya reports it
/// as KeyNotFound from some calls and as the syscall's ENOENT from
/// `bpf_map_delete_elem`.
fn ignore_missing(result: Result<(), MapError>) -> Result<()> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pin_link(link: FdLink, pin: &Path) -> Result<()> {
    remove_if_present(pin)?;
    link.pin(pin)
        .with_context(|| format!("pinning link at {}", pin.display()))?;
    Ok(())
}

fn sock_hook<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSockAddr> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {name} is not a cgroup sock_addr program"))
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {name} is not a classifier"))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn on_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Makes sure `dir` lives on a bpf filesystem, mounting one if needed (as
/// Cilium does): at /sys/fs/bpf for paths below it, else at `dir` itself.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    // Daemons starting side by side (tests) must not both mount: the
    // second mount would hide the first one's pins.
    let lock_file =
        fs::File::create("/run/netd-bpffs.lock").context("creating /run/netd-bpffs.lock")?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking /run/netd-bpffs.lock")?;
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !on_bpffs(existing) {
        let sys_bpf = Path::new("/sys/fs/bpf");
        let mount_at = if dir.starts_with(sys_bpf) {
            sys_bpf
        } else {
            dir
        };
        fs::create_dir_all(mount_at).with_context(|| format!("creating {}", mount_at.display()))?;
        if !on_bpffs(mount_at) {
            mount(
                Some("bpf"),
                mount_at,
                Some("bpf"),
                MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("mounting bpffs at {}", mount_at.display()))?;
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Whether netd's maps are pinned in `bpffs`: a deployment is (or was until
/// a crash) running there.
pub fn has_pins(bpffs: &Path) -> bool {
    map_names::ALL
        .iter()
        .any(|name| bpffs.join(name).exists() || migrate::aside(bpffs, name).exists())
}

/// Removes every pinned object netd created (maps and links) and the dir.
pub fn unpin_all(bpffs: &Path) -> Result<()> {
    match fs::remove_dir_all(bpffs) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing pinned objects in {}", bpffs.display())),
    }
}

/// The map layouts hold IPv4 addresses in network byte order.
fn be_v4(ip: IpAddr) -> EngineResult<u32> {
    match ip {
        IpAddr::V4(ip) => Ok(u32::from(ip).to_be()),
        IpAddr::V6(ip) => Err(EngineError::invalid(format!(
            "{ip}: the datapath carries IPv4 only so far"
        ))),
    }
}

fn proto_number(proto: Proto) -> u8 {
    proto.number()
}

fn port_key6(e: &PortEntry, host_ip: Ipv6Addr) -> PortMap6Key {
    PortMap6Key {
        host_ip: host_ip.octets(),
        host_port: e.host_port.to_be(),
        proto: proto_number(e.proto),
        pad: 0,
    }
}

fn proto_of(number: u8) -> Option<Proto> {
    match number {
        netd_common::IPPROTO_TCP => Some(Proto::Tcp),
        netd_common::IPPROTO_UDP => Some(Proto::Udp),
        _ => None,
    }
}

fn port_key(e: &PortEntry) -> EngineResult<PortMapKey> {
    Ok(PortMapKey {
        host_ip: be_v4(e.host_ip)?,
        host_port: e.host_port.to_be(),
        proto: proto_number(e.proto),
        pad: 0,
    })
}

impl Datapath for BpfDatapath {
    fn set_endpoint(&self, ep: &DatapathEndpoint) -> EngineResult<()> {
        let gateway = be_v4(ep.gateway)?;
        let value = EndpointValue {
            ifindex: ep.veth_ifindex,
            network_id: ep.network_id,
            mac: ep.mac,
            gw_mac: ep.gateway_mac,
            gateway,
            flags: ep.flags,
        };
        let IpAddr::V4(ip) = ep.ip else {
            return Err(EngineError::invalid(
                "an endpoint's first address must be IPv4 (its IPv6 one goes beside it)",
            ));
        };
        let ip6 = match ep.ip6 {
            Some(IpAddr::V6(ip6)) => Some(ip6),
            Some(IpAddr::V4(other)) => {
                return Err(EngineError::invalid(format!(
                    "{other} is not an IPv6 address"
                )));
            }
            None => None,
        };
        let veth = VethValue {
            ip: be_v4(ep.ip)?,
            network_id: ep.network_id,
            gateway,
            flags: ep.flags,
            mac: ep.mac,
            pad: [0; 2],
            ip6: ip6.map_or([0; 16], |a| a.octets()),
        };
        let v6 = ip6.map(|ip6| {
            let ep6 = Endpoint6Value {
                ifindex: ep.veth_ifindex,
                network_id: ep.network_id,
                flags: ep.flags,
                mac: ep.mac,
                gw_mac: ep.gateway_mac,
            };
            (ip6, ep6)
        });
        self.with(|o| o.set_endpoint(ip, value, veth, v6)).kernel()
    }

    fn remove_endpoint(
        &self,
        ip: IpAddr,
        ip6: Option<IpAddr>,
        veth_ifindex: u32,
    ) -> EngineResult<()> {
        let IpAddr::V4(ip) = ip else {
            return Ok(());
        };
        let ip6 = match ip6 {
            Some(IpAddr::V6(ip6)) => Some(ip6),
            _ => None,
        };
        self.with(|o| o.remove_endpoint(ip, ip6, veth_ifindex))
            .kernel()
    }

    fn attach_veth(&self, ifname: &str) -> EngineResult<()> {
        self.with(|o| o.attach_veth(ifname)).kernel()
    }

    fn detach_veth(&self, ifname: &str) -> EngineResult<()> {
        self.with(|o| o.detach_veth(ifname)).kernel()
    }

    fn unpin_orphan_veth_links(&self, owned: &HashSet<String>) -> EngineResult<()> {
        self.with(|o| o.unpin_orphan_veth_links(owned)).kernel()
    }

    fn set_bridge(&self, bridge: &DatapathBridge) -> EngineResult<()> {
        let value = BridgeValue {
            network_id: bridge.network_id,
            gateway: be_v4(bridge.gateway)?,
            flags: bridge.flags,
        };
        self.with(|o| o.set_bridge(bridge.ifindex, value)).kernel()
    }

    /// Each entry into its family's map, by its host address.
    fn insert_ports(&self, entries: &[PortEntry]) -> EngineResult<()> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for e in entries {
            match (e.host_ip, e.container_ip) {
                (IpAddr::V6(host), IpAddr::V6(container)) => v6.push((
                    port_key6(e, host),
                    PortMap6Value {
                        container_ip: container.octets(),
                        container_port: e.container_port.to_be(),
                        pad: 0,
                    },
                )),
                _ => v4.push((
                    port_key(e)?,
                    PortMapValue {
                        container_ip: be_v4(e.container_ip)?,
                        container_port: e.container_port.to_be(),
                        pad: 0,
                    },
                )),
            }
        }
        self.with(|o| o.insert_portmaps(&v4)).kernel()?;
        self.with(|o| o.insert_portmaps6(&v6)).kernel()
    }

    fn remove_ports(&self, entries: &[PortEntry]) -> EngineResult<()> {
        let keys = entries
            .iter()
            .filter(|e| e.host_ip.is_ipv4())
            .map(port_key)
            .collect::<EngineResult<Vec<_>>>()?;
        let keys6: Vec<PortMap6Key> = entries
            .iter()
            .filter_map(|e| match e.host_ip {
                IpAddr::V6(host) => Some(port_key6(e, host)),
                IpAddr::V4(_) => None,
            })
            .collect();
        let v6 = self.with(|o| o.remove_portmaps6(&keys6)).kernel();
        self.with(|o| o.remove_portmaps(&keys)).kernel().and(v6)
    }

    fn port_keys(&self) -> EngineResult<Vec<(IpAddr, u16, Proto)>> {
        let keys = self.with(|o| o.portmap_keys()).kernel()?;
        let keys6 = self.with(|o| o.portmap6_keys()).kernel()?;
        let v4 = keys.into_iter().filter_map(|k| {
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(k.host_ip)));
            Some((ip, u16::from_be(k.host_port), proto_of(k.proto)?))
        });
        let v6 = keys6.into_iter().filter_map(|k| {
            let ip = IpAddr::V6(Ipv6Addr::from(k.host_ip));
            Some((ip, u16::from_be(k.host_port), proto_of(k.proto)?))
        });
        Ok(v4.chain(v6).collect())
    }

    fn sync_services(&self, services: &HashSet<Service>) -> EngineResult<()> {
        let mut keys = HashSet::new();
        let mut keys6 = HashSet::new();
        for s in services {
            let (container_port, proto) = (s.container_port.to_be(), proto_number(s.proto));
            match s.container_ip {
                IpAddr::V4(ip) => keys.insert(ServiceKey {
                    container_ip: u32::from(ip).to_be(),
                    container_port,
                    proto,
                    pad: 0,
                }),
                IpAddr::V6(ip) => keys6.insert(Service6Key {
                    container_ip: ip.octets(),
                    container_port,
                    proto,
                    pad: 0,
                }),
            };
        }
        self.with(|o| o.sync_services(&keys, &keys6)).kernel()
    }

    fn sync_host_addrs(&self, addrs: &[IpAddr]) -> EngineResult<()> {
        let v4: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(ip) => Some(*ip),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = addrs
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(ip) => Some(*ip),
                IpAddr::V4(_) => None,
            })
            .collect();
        self.with(|o| o.sync_host_addrs(&v4)).kernel()?;
        self.with(|o| o.sync_host_addrs6(&v6)).kernel()
    }

    fn stats(&self) -> EngineResult<Vec<(StatIndex, Counter)>> {
        self.with(|o| o.stats()).kernel()
    }
}
