//! Upgrades over pinned maps. A daemon reuses the maps an earlier one
//! pinned (aya opens a pin whatever its layout), so that flows, counters
//! and published ports survive restarts, upgrades included. A map whose
//! layout (type, key or value size, or, unless a flag sets it, size)
//! changed between versions cannot be reused: it is converted instead.
//!
//! Before the object is loaded, [`Plan::prepare`] compares every pin with
//! what the new object declares and reads (and converts) the entries of
//! each map that differs; [`Plan::set_aside`] moves its pin to
//! `upgrading/<name>` (bpffs reserves names with a dot); the load creates
//! and pins the new map; [`Plan::finish`] writes the converted entries into
//! it and only then removes the old pin. A start that stops midway leaves
//! `upgrading/<name>` behind, and the next start converts from it again
//! (whether or not the new map was pinned yet): the entries are on a pin
//! until they are in the new map. A failed start puts the old pin back. A
//! map with no converter for its old layout is refused, with what to do.
//!
//! While the old pins are aside, the programs of the earlier version keep
//! running on the old maps (they hold references to them), so traffic
//! keeps flowing until the new programs replace them in the pinned links;
//! what those programs write to the old maps after the entries were read
//! (a flow started in that window, a few packets' counts) is lost.

use std::{
    collections::HashMap as StdHashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, Pod,
    maps::{HashMap, Map, MapData, MapInfo, MapType, PerCpuArray, PerCpuValues},
};
use netd_common::{Counter, Ct6Key, Ct6Value, VethValue, map_names};

/// The dir where old pins wait while they are being converted.
const ASIDE_DIR: &str = "upgrading";

/// `NETD_VETHS6` of cb7eb2b and before: the IPv6 side of a veth's
/// endpoint, now `ip6` in its `NETD_VETHS` entry (one lookup per packet).
/// Read when `NETD_VETHS` is converted; its pin goes once the converted
/// entries are written.
const RETIRED_VETHS6: &str = "NETD_VETHS6";

/// Where a map's pin waits while it is being converted.
pub fn aside(bpffs: &Path, name: &str) -> PathBuf {
    bpffs.join(ASIDE_DIR).join(name)
}

/// What a map is, as far as reusing its pin goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl Layout {
    fn of_pin(pin: &Path) -> Result<Self> {
        let info = MapInfo::from_pin(pin)
            .with_context(|| format!("reading the layout of the pinned map {}", pin.display()))?;
        Ok(Self {
            map_type: info
                .map_type()
                .with_context(|| format!("reading the type of the pinned map {}", pin.display()))?,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        })
    }

    fn of_object(map: &aya_obj::Map) -> Result<Self> {
        let raw = map.map_type();
        let map_type = aya_obj::generated::bpf_map_type::try_from(raw)
            .map_err(|_| anyhow!("unknown map type {raw}"))
            .and_then(|t| MapType::try_from(t).map_err(|e| anyhow!("map type {raw}: {e}")))?;
        Ok(Self {
            map_type,
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{:?}, {}-byte keys, {}-byte values, {} entries",
            self.map_type, self.key_size, self.value_size, self.max_entries
        )
    }
}

/// The layout of every map of netd's the object declares (`.rodata` and
/// the like are no concern: never pinned), with the sizes the loader sets
/// (`map_max_entries`) in place of the declared ones.
pub fn declared(object: &[u8], sizes: &[(&str, u32)]) -> Result<StdHashMap<String, Layout>> {
    let object = aya_obj::Object::parse(object).context("parsing the eBPF object")?;
    object
        .maps
        .iter()
        .filter(|(name, _)| map_names::ALL.contains(&name.as_str()))
        .map(|(name, map)| {
            let mut layout = Layout::of_object(map)
                .with_context(|| format!("reading the layout of map {name} in the object"))?;
            if let Some((_, entries)) = sizes.iter().find(|(n, _)| n == name) {
                layout.max_entries = *entries;
            }
            Ok((name.clone(), layout))
        })
        .collect()
}

/// `NETD_CT6`'s value up to dd4b0f4 (64 bytes): `Ct6Value` without the TCP
/// state (`tcp_flags`, `tcp_seq_end`), which came with the IPv6 assured
/// table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct6ValueV1 {
    pub nat_src_ip: [u8; 16],
    pub nat_dst_ip: [u8; 16],
    pub nat_src_port: u16,
    pub nat_dst_port: u16,
    pub kind: u8,
    pub direction: u8,
    pub pad: [u8; 2],
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: plain old data, `repr(C)`, no pointers (as netd-common's types).
unsafe impl Pod for Ct6ValueV1 {}

impl From<Ct6ValueV1> for Ct6Value {
    /// The TCP state starts at zero, which the datapath reads as "no flag
    /// seen yet" (an answered flow shows ESTABLISHED, as it did before);
    /// the next packets fill it in.
    fn from(old: Ct6ValueV1) -> Self {
        Ct6Value {
            nat_src_ip: old.nat_src_ip,
            nat_dst_ip: old.nat_dst_ip,
            nat_src_port: old.nat_src_port,
            nat_dst_port: old.nat_dst_port,
            kind: old.kind,
            direction: old.direction,
            last_seen_ns: old.last_seen_ns,
            packets: old.packets,
            bytes: old.bytes,
            ..Ct6Value::default()
        }
    }
}

/// `NETD_VETHS`'s value up to cb7eb2b (24 bytes): `VethValue` without
/// `ip6`, which was in `NETD_VETHS6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VethValueV1 {
    pub ip: u32,
    pub network_id: u32,
    pub gateway: u32,
    pub flags: u32,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

/// `NETD_VETHS6`'s value (retired after cb7eb2b).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Veth6ValueV1 {
    pub ip6: [u8; 16],
    pub network_id: u32,
    pub pad: u32,
}

// SAFETY: plain old data, `repr(C)`, no pointers.
unsafe impl Pod for VethValueV1 {}
// SAFETY: as above.
unsafe impl Pod for Veth6ValueV1 {}

impl VethValueV1 {
    /// The entry in the new layout, with the IPv6 address of its
    /// `NETD_VETHS6` entry (`None`: an IPv4-only endpoint).
    fn with_ip6(self, ip6: Option<[u8; 16]>) -> VethValue {
        VethValue {
            ip: self.ip,
            network_id: self.network_id,
            gateway: self.gateway,
            flags: self.flags,
            mac: self.mac,
            pad: self.pad,
            ip6: ip6.unwrap_or_default(),
        }
    }
}

/// Entries of an old map in the new layout, waiting for the new map.
#[derive(Debug)]
enum Converted {
    Ct6(Vec<(Ct6Key, Ct6Value)>),
    /// By veth ifindex.
    Veths(Vec<(u32, VethValue)>),
    /// Every CPU's counters, by index.
    Stats(Vec<Vec<Counter>>),
    /// Nothing to keep.
    Nothing,
}

impl Converted {
    fn len(&self) -> usize {
        match self {
            Converted::Ct6(entries) => entries.len(),
            Converted::Veths(entries) => entries.len(),
            Converted::Stats(counters) => counters.len(),
            Converted::Nothing => 0,
        }
    }
}

/// The converters, one per map and old layout. `None`: no conversion
/// known. Maps of dd4b0f4 (the previous release) whose layout changed
/// since: `NETD_CT6` (TCP state added), `NETD_STATS` (a counter added),
/// `NETD_SCRATCH6` (bigger scratch). Maps added since (`NETD_CT6_ASSURED`,
/// `NETD_SERVICES6`, `NETD_FRAGS6`) are simply created; `NETD_SERVICES6` is
/// filled by the start's reconcile, the others by traffic. After cb7eb2b:
/// `NETD_VETHS` (the IPv6 address of `NETD_VETHS6` added; the start's
/// reconcile writes every entry again, but the new programs check
/// anti-spoofing from the moment they replace the old ones).
fn convert(
    bpffs: &Path,
    name: &str,
    pin: &Path,
    old: &Layout,
    new: &Layout,
) -> Result<Option<Converted>> {
    let same_kind = old.map_type == new.map_type && old.key_size == new.key_size;
    let converted = match name {
        map_names::CT6 if same_kind && old.value_size == size_of::<Ct6ValueV1>() as u32 => {
            let map: HashMap<MapData, Ct6Key, Ct6ValueV1> = HashMap::try_from(open(pin)?)
                .with_context(|| format!("opening {} as an earlier NETD_CT6", pin.display()))?;
            // An entry that goes away while the table is walked (the old
            // programs still run) is skipped.
            let entries: Vec<(Ct6Key, Ct6Value)> = map
                .iter()
                .filter_map(Result::ok)
                .map(|(key, value)| (key, value.into()))
                .collect();
            // More entries than the new table holds would be evicted as
            // they are written. (An LRU evicts a little before it is full,
            // so one nearly full may still lose a few: as under traffic.)
            if entries.len() > new.max_entries as usize {
                let flows = entries.len().div_ceil(2);
                bail!(
                    "the pinned map {} holds {} entries, more than the {} of its new layout: restart with a larger --ct6-max (at least {flows}), or run `netd down` first (its live flows are lost)",
                    pin.display(),
                    entries.len(),
                    new.max_entries,
                );
            }
            Converted::Ct6(entries)
        }
        map_names::VETHS if same_kind && old.value_size == size_of::<VethValueV1>() as u32 => {
            Converted::Veths(veths_with_ip6(bpffs, pin)?)
        }
        map_names::STATS if same_kind && old.value_size == new.value_size => {
            let map: PerCpuArray<MapData, Counter> = PerCpuArray::try_from(open(pin)?)
                .with_context(|| format!("opening {} as an earlier NETD_STATS", pin.display()))?;
            // The counters that exist in both; those added since start at
            // zero (and any dropped since are gone).
            let counters = (0..old.max_entries.min(new.max_entries))
                .map(|index| {
                    map.get(&index, 0)
                        .map(|per_cpu| per_cpu.iter().copied().collect())
                        .with_context(|| format!("reading counter {index} of {}", pin.display()))
                })
                .collect::<Result<_>>()?;
            Converted::Stats(counters)
        }
        // Per-packet scratch room of the IPv6 path: nothing survives a
        // packet, so nothing to keep.
        map_names::SCRATCH6 if old.map_type == new.map_type => Converted::Nothing,
        _ => return Ok(None),
    };
    Ok(Some(converted))
}

/// The entries of an earlier `NETD_VETHS` at `pin`, each with the IPv6
/// address its veth has in the retired `NETD_VETHS6`, if pinned.
fn veths_with_ip6(bpffs: &Path, pin: &Path) -> Result<Vec<(u32, VethValue)>> {
    let map: HashMap<MapData, u32, VethValueV1> = HashMap::try_from(open(pin)?)
        .with_context(|| format!("opening {} as an earlier NETD_VETHS", pin.display()))?;
    let v6_pin = bpffs.join(RETIRED_VETHS6);
    let ip6: StdHashMap<u32, [u8; 16]> = if v6_pin.exists() {
        let v6: HashMap<MapData, u32, Veth6ValueV1> = HashMap::try_from(open(&v6_pin)?)
            .with_context(|| format!("opening {} as NETD_VETHS6", v6_pin.display()))?;
        v6.iter()
            .filter_map(Result::ok)
            .map(|(ifindex, v)| (ifindex, v.ip6))
            .collect()
    } else {
        StdHashMap::new()
    };
    // An entry that goes away while the table is walked is skipped.
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(ifindex, old)| (ifindex, old.with_ip6(ip6.get(&ifindex).copied())))
        .collect())
}

fn open(pin: &Path) -> Result<Map> {
    let data = MapData::from_pin(pin)
        .with_context(|| format!("opening the pinned map {}", pin.display()))?;
    Map::from_map_data(data).with_context(|| format!("opening the pinned map {}", pin.display()))
}

/// One map to convert.
#[derive(Debug)]
struct Migration {
    name: &'static str,
    pin: PathBuf,
    aside: PathBuf,
    entries: Converted,
}

/// The maps to convert on this start.
#[derive(Debug)]
pub struct Plan {
    bpffs: PathBuf,
    migrations: Vec<Migration>,
}

impl Plan {
    /// Finds the pinned maps whose layout differs from `declared` (and the
    /// conversions an earlier start left halfway) and reads their entries.
    /// Changes nothing: an error here is a refusal with nothing touched.
    /// `flag_sized`: maps whose size a flag sets; a pin of another size
    /// only is for the caller to refuse (resizing drops live flows).
    pub fn prepare(
        bpffs: &Path,
        declared: &StdHashMap<String, Layout>,
        flag_sized: &[&str],
    ) -> Result<Self> {
        let mut migrations = Vec::new();
        for name in map_names::ALL {
            let new = declared
                .get(name)
                .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
            let pin = bpffs.join(name);
            let aside = aside(bpffs, name);
            let from = if aside.exists() {
                // An earlier start stopped between setting the old pin aside
                // and removing it: the new map may be pinned already (and
                // partly written: it is written again).
                if pin.exists() && Layout::of_pin(&pin)? != *new {
                    bail!(
                        "both {} and {} are pinned, and neither has this netd's layout: run `netd down` first",
                        pin.display(),
                        aside.display(),
                    );
                }
                tracing::info!(
                    "resuming the conversion of {name}, which an earlier start left halfway"
                );
                aside.clone()
            } else if pin.exists() {
                let old = Layout::of_pin(&pin)?;
                let resized_only = Layout {
                    max_entries: new.max_entries,
                    ..old
                } == *new;
                if old == *new || (resized_only && flag_sized.contains(&name)) {
                    continue;
                }
                pin.clone()
            } else {
                continue;
            };
            let old = Layout::of_pin(&from)?;
            let Some(entries) = convert(bpffs, name, &from, &old, new)? else {
                bail!(
                    "the pinned map {} ({}) differs from this netd's ({}), and netd knows no conversion from that layout (pinned by another version): run `netd down` first (its entries are lost)",
                    from.display(),
                    old.describe(),
                    new.describe(),
                );
            };
            migrations.push(Migration {
                name,
                pin,
                aside,
                entries,
            });
        }
        Ok(Self {
            bpffs: bpffs.to_path_buf(),
            migrations,
        })
    }

    /// Whether `name` is converted on this start (its pin is replaced).
    pub fn converts(&self, name: &str) -> bool {
        self.migrations.iter().any(|m| m.name == name)
    }

    /// Moves the old pins aside, so that the load creates the new maps.
    pub fn set_aside(&self) -> Result<()> {
        if let Some(m) = self.migrations.first()
            && let Some(dir) = m.aside.parent()
        {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for m in &self.migrations {
            if !m.aside.exists() {
                fs::rename(&m.pin, &m.aside).with_context(|| {
                    format!("moving {} aside to {}", m.pin.display(), m.aside.display())
                })?;
            }
        }
        Ok(())
    }

    /// Writes the converted entries into the new maps (pinned by the load),
    /// then removes the old pins.
    pub fn finish(&self, ebpf: &mut Ebpf) -> Result<()> {
        for m in &self.migrations {
            write(ebpf, m.name, &m.entries)
                .with_context(|| format!("writing the converted entries of {}", m.name))?;
        }
        for m in &self.migrations {
            fs::remove_file(&m.aside)
                .with_context(|| format!("removing the old pin {}", m.aside.display()))?;
            tracing::info!(
                "converted the pinned map {} to this version's layout ({} entries)",
                m.name,
                m.entries.len()
            );
        }
        if let Some(dir) = self.migrations.first().and_then(|m| m.aside.parent()) {
            // Empty now, unless a start of another version left more there.
            let _ = fs::remove_dir(dir);
        }
        // Read by the conversions above, now written: no longer needed.
        let retired = self.bpffs.join(RETIRED_VETHS6);
        match fs::remove_file(&retired) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing the retired pin {}", retired.display()))
            }
            _ => Ok(()),
        }
    }

    /// Puts the old pins back after a failed start, so that the version
    /// they came from still finds them (the new maps go).
    pub fn roll_back(&self) {
        for m in &self.migrations {
            if !m.aside.exists() {
                continue;
            }
            let restored = match fs::remove_file(&m.pin) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => fs::rename(&m.aside, &m.pin),
            };
            if let Err(e) = restored {
                tracing::warn!(
                    "could not put the old pin of {} back ({e}); the next start converts it again",
                    m.name
                );
            }
        }
    }
}

fn write(ebpf: &mut Ebpf, name: &str, entries: &Converted) -> Result<()> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
    match entries {
        Converted::Ct6(entries) => {
            let mut map: HashMap<&mut MapData, Ct6Key, Ct6Value> = HashMap::try_from(map)?;
            for (key, value) in entries {
                map.insert(key, value, 0)?;
            }
        }
        Converted::Veths(entries) => {
            let mut map: HashMap<&mut MapData, u32, VethValue> = HashMap::try_from(map)?;
            for (ifindex, value) in entries {
                map.insert(ifindex, value, 0)?;
            }
        }
        Converted::Stats(counters) => {
            let mut map: PerCpuArray<&mut MapData, Counter> = PerCpuArray::try_from(map)?;
            for (index, per_cpu) in (0u32..).zip(counters) {
                let values = PerCpuValues::try_from(per_cpu.clone())
                    .context("per-CPU counters for another number of CPUs")?;
                map.set(index, values, 0)?;
            }
        }
        Converted::Nothing => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_ct6_value_is_64_bytes_and_converts_field_for_field() {
        assert_eq!(size_of::<Ct6ValueV1>(), 64);
        let old = Ct6ValueV1 {
            nat_src_ip: [1; 16],
            nat_dst_ip: [2; 16],
            nat_src_port: 3,
            nat_dst_port: 4,
            kind: 2,
            direction: 1,
            pad: [9; 2],
            last_seen_ns: 5,
            packets: 6,
            bytes: 7,
        };
        let new = Ct6Value::from(old);
        assert_eq!(
            (
                new.nat_src_ip,
                new.nat_dst_ip,
                new.nat_src_port,
                new.nat_dst_port
            ),
            ([1; 16], [2; 16], 3, 4)
        );
        assert_eq!((new.kind, new.direction), (2, 1));
        assert_eq!((new.last_seen_ns, new.packets, new.bytes), (5, 6, 7));
        assert_eq!((new.tcp_flags, new.tcp_seq_end), (0, 0), "no TCP state yet");
        assert_eq!((new.pad, new.pad2), (0, 0));
    }

    #[test]
    fn an_earlier_veth_entry_gets_its_ipv6_address() {
        assert_eq!(size_of::<VethValueV1>(), 24);
        assert_eq!(size_of::<Veth6ValueV1>(), 24);
        let old = VethValueV1 {
            ip: 1,
            network_id: 2,
            gateway: 3,
            flags: 4,
            mac: [5; 6],
            pad: [0; 2],
        };
        let new = old.with_ip6(Some([6; 16]));
        assert_eq!(
            (new.ip, new.network_id, new.gateway, new.flags, new.mac),
            (1, 2, 3, 4, [5; 6])
        );
        assert_eq!(new.ip6, [6; 16]);
        assert_eq!(old.with_ip6(None).ip6, [0; 16], "IPv4 only: no address");
    }

    #[test]
    fn the_object_declares_the_maps_and_the_flag_sizes_apply() {
        let declared = declared(
            super::super::datapath::OBJECT,
            &[(map_names::CT6, 2048), (map_names::CT6_ASSURED, 2048)],
        )
        .unwrap();
        for name in map_names::ALL {
            assert!(declared.contains_key(name), "{name}");
        }
        let ct6 = declared[map_names::CT6];
        assert_eq!(ct6.map_type, MapType::LruHash);
        assert_eq!(ct6.key_size as usize, size_of::<Ct6Key>());
        assert_eq!(ct6.value_size as usize, size_of::<Ct6Value>());
        assert_eq!(ct6.max_entries, 2048);
        let stats = declared[map_names::STATS];
        assert_eq!(stats.map_type, MapType::PerCpuArray);
        assert_eq!(stats.max_entries, netd_common::StatIndex::COUNT);
    }
}
