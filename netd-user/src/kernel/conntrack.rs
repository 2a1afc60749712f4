//! Userspace side of connection tracking: the garbage collector that
//! expires flows (the datapath only creates and refreshes entries), and
//! the listing behind `netd conntrack ls`.
//!
//! Timeouts follow Linux conntrack's spirit with Cilium's values: long for
//! established TCP, short for unanswered and closing flows, and UDP/ICMP
//! in between. A flow's age is the newer `last_seen` of its two entries.
//!
//! Both families by the same code: [`Conntrack`] is generic over the
//! tuple type ([`Tuple`]: `CtKey` for the IPv4 tables, `Ct6Key` for the
//! IPv6 ones), whose entries have the same fields.

use std::{
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::{
    Pod,
    maps::{HashMap, IterableMap, Map, MapData},
};
use netd_common::{
    Ct6Key, Ct6Value, CtKey, CtValue, IPPROTO_ICMP, IPPROTO_TCP, ct_dir, ct_kind, ct_tcp, map_names,
};

/// A family's conntrack tuple (the tables' key) and what the GC and the
/// listing read of it and of its entries (`Value`).
pub trait Tuple: Pod + Default + Eq + Hash {
    type Value: Pod + Default;
    /// The family's two tables, assured first (`map_names::CT_TABLES`).
    const TABLES: [&'static str; 2];
    /// What a failed batch read names.
    const WHAT: &'static str;
    fn proto(&self) -> u8;
    fn reversed(&self) -> Self;
    /// Source and destination address.
    fn ips(&self) -> [IpAddr; 2];
    /// Source and destination port (network order).
    fn ports(&self) -> [u16; 2];
    /// `value`'s translated tuple.
    fn translated(value: &Self::Value, proto: u8) -> Self;
    fn direction(value: &Self::Value) -> u8;
    fn kind(value: &Self::Value) -> u8;
    fn tcp_flags(value: &Self::Value) -> u8;
    fn last_seen_ns(value: &Self::Value) -> u64;
    fn packets(value: &Self::Value) -> u64;
    fn bytes(value: &Self::Value) -> u64;
}

/// The same `Tuple` impl for both families' types (their fields have the
/// same names).
macro_rules! tuple_impl {
    ($key:ty, $value:ty, $tables:expr, $what:literal, $ip:expr) => {
        impl Tuple for $key {
            type Value = $value;
            const TABLES: [&'static str; 2] = $tables;
            const WHAT: &'static str = $what;
            fn proto(&self) -> u8 {
                self.proto
            }
            fn reversed(&self) -> Self {
                <$key>::reversed(self)
            }
            fn ips(&self) -> [IpAddr; 2] {
                [$ip(self.src_ip), $ip(self.dst_ip)]
            }
            fn ports(&self) -> [u16; 2] {
                [self.src_port, self.dst_port]
            }
            fn translated(value: &$value, proto: u8) -> Self {
                value.translated(proto)
            }
            fn direction(value: &$value) -> u8 {
                value.direction
            }
            fn kind(value: &$value) -> u8 {
                value.kind
            }
            fn tcp_flags(value: &$value) -> u8 {
                value.tcp_flags
            }
            fn last_seen_ns(value: &$value) -> u64 {
                value.last_seen_ns
            }
            fn packets(value: &$value) -> u64 {
                value.packets
            }
            fn bytes(value: &$value) -> u64 {
                value.bytes
            }
        }
    };
}

tuple_impl!(
    CtKey,
    CtValue,
    map_names::CT_TABLES,
    "the conntrack map",
    |ip: u32| IpAddr::V4(Ipv4Addr::from(u32::from_be(ip)))
);
tuple_impl!(
    Ct6Key,
    Ct6Value,
    map_names::CT6_TABLES,
    "the IPv6 conntrack map",
    |ip: [u8; 16]| IpAddr::V6(Ipv6Addr::from(ip))
);
use nix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_unreplied: Duration,
    pub tcp_closing: Duration,
    pub udp: Duration,
    pub udp_unreplied: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: Duration::from_secs(21600),
            tcp_unreplied: Duration::from_secs(60),
            tcp_closing: Duration::from_secs(10),
            udp: Duration::from_secs(120),
            udp_unreplied: Duration::from_secs(30),
            icmp: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The shortest of them (and of a half-closed flow's cap): no flow
    /// expires younger.
    pub fn shortest(&self) -> Duration {
        [
            TCP_HALF_CLOSED_MAX,
            self.tcp_established,
            self.tcp_unreplied,
            self.tcp_closing,
            self.udp,
            self.udp_unreplied,
            self.icmp,
        ]
        .into_iter()
        .min()
        .unwrap_or_default()
    }
}

/// How long a half-closed TCP flow (FIN one way only) is kept at most:
/// the other side may still send, but a peer that vanished after its FIN
/// must not pin the entry for the whole established timeout.
const TCP_HALF_CLOSED_MAX: Duration = Duration::from_secs(120);

/// What the GC knows of a TCP flow, from the sticky flags of each
/// direction (ORIGINAL entry: original direction; REPLY entry: reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    Established,
    HalfClosed,
    Closing,
}

impl TcpState {
    /// Closing takes an RST either way or a FIN both ways: a FIN one way
    /// only is a half-close, and the other side may go on sending.
    pub fn of(orig_flags: u8, reply_flags: u8, replied: bool) -> Self {
        let fin = |f: u8| f & ct_tcp::FIN != 0;
        if (orig_flags | reply_flags) & ct_tcp::RST != 0 || (fin(orig_flags) && fin(reply_flags)) {
            TcpState::Closing
        } else if !replied {
            TcpState::SynSent
        } else if fin(orig_flags) || fin(reply_flags) {
            TcpState::HalfClosed
        } else {
            TcpState::Established
        }
    }

    fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::Established => "ESTABLISHED",
            TcpState::HalfClosed => "HALF_CLOSED",
            TcpState::Closing => "CLOSING",
        }
    }

    fn timeout(self, t: &Timeouts) -> Duration {
        match self {
            TcpState::SynSent => t.tcp_unreplied,
            TcpState::Established => t.tcp_established,
            TcpState::HalfClosed => t.tcp_established.min(TCP_HALF_CLOSED_MAX),
            TcpState::Closing => t.tcp_closing,
        }
    }
}

/// A flow: its ORIGINAL entry and, when present, its REPLY entry.
struct Flow<K: Tuple> {
    key: K,
    orig: K::Value,
    reply_key: K,
    reply: Option<K::Value>,
}

impl<K: Tuple> Flow<K> {
    fn last_seen(&self) -> u64 {
        let orig = K::last_seen_ns(&self.orig);
        self.reply
            .as_ref()
            .map_or(orig, |r| K::last_seen_ns(r).max(orig))
    }

    fn replied(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| K::packets(r) > 0)
    }

    fn tcp_state(&self) -> TcpState {
        let reply_flags = self.reply.as_ref().map_or(0, K::tcp_flags);
        TcpState::of(K::tcp_flags(&self.orig), reply_flags, self.replied())
    }

    fn state(&self) -> &'static str {
        match self.key.proto() {
            IPPROTO_TCP => self.tcp_state().name(),
            _ if self.replied() => "REPLIED",
            _ => "UNREPLIED",
        }
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        match self.key.proto() {
            IPPROTO_TCP => self.tcp_state().timeout(t),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => t.icmp,
            _ if self.replied() => t.udp,
            _ => t.udp_unreplied,
        }
    }

    fn expired(&self, now: u64, t: &Timeouts) -> bool {
        now.saturating_sub(self.last_seen()) > self.timeout(t).as_nanos() as u64
    }

    /// Whether the flow touches one of `ips` in its original or
    /// translated tuple, and `port` (host order) anywhere.
    fn matches(&self, filter: &Filter) -> bool {
        let t = K::translated(&self.orig, self.key.proto());
        let ip_ok = filter.ips.as_ref().is_none_or(|ips| {
            self.key
                .ips()
                .iter()
                .chain(t.ips().iter())
                .any(|ip| ips.contains(ip))
        });
        let port_ok = filter.port.is_none_or(|port| {
            self.key
                .ports()
                .iter()
                .chain(t.ports().iter())
                .any(|p| u16::from_be(*p) == port)
        });
        ip_ok && port_ok
    }

    fn to_json(&self, now: u64, timeouts: &Timeouts) -> Value {
        let idle = Duration::from_nanos(now.saturating_sub(self.last_seen()));
        let t = K::translated(&self.orig, self.key.proto());
        json!({
            "family": if matches!(self.key.ips()[0], IpAddr::V6(_)) { "ipv6" } else { "ipv4" },
            "proto": proto_name(self.key.proto()),
            "kind": kind_name(K::kind(&self.orig)),
            "state": self.state(),
            "original": tuple(&self.key),
            "translated": tuple(&t),
            "packets": K::packets(&self.orig),
            "bytes": K::bytes(&self.orig),
            "reply_packets": self.reply.as_ref().map_or(0, K::packets),
            "reply_bytes": self.reply.as_ref().map_or(0, K::bytes),
            "idle_secs": idle.as_secs(),
            "expires_in_secs": self.timeout(timeouts).saturating_sub(idle).as_secs(),
        })
    }
}

/// Which flows `conntrack ls` shows: all when both are `None`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A container's endpoint addresses.
    pub ips: Option<Vec<IpAddr>>,
    /// A port, host order, on either side of either tuple.
    pub port: Option<u16>,
}

/// What one GC pass saw and did.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcPass {
    /// Entries in the table when it was read (two per flow).
    pub entries: usize,
    /// Flows removed.
    pub expired: usize,
}

/// A family's conntrack tables, opened from their pins: the GC and the
/// listing run beside the daemon's request handling without sharing (or
/// locking) its map handles. `Conntrack` (IPv4) or `Conntrack<Ct6Key>`.
pub struct Conntrack<K: Tuple = CtKey> {
    /// `K::TABLES`: assured flows, then new flows (LRU), whose copies of
    /// assured flows are stale and never shown.
    tables: Vec<HashMap<MapData, K, K::Value>>,
}

pub fn now_ns() -> Result<u64> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).context("reading CLOCK_MONOTONIC")?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

impl<K: Tuple> Conntrack<K> {
    /// Both conntrack tables of the family, from their pins.
    pub fn open(bpffs: &Path) -> Result<Self> {
        let tables = K::TABLES
            .iter()
            .map(|name| {
                let path = bpffs.join(name);
                let data = MapData::from_pin(&path)
                    .with_context(|| format!("opening pinned map {}", path.display()))?;
                HashMap::try_from(Map::from_map_data(data)?)
                    .with_context(|| format!("opening the conntrack map {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { tables })
    }

    /// Deletes expired flows (both entries, from whichever table holds
    /// them).
    pub fn gc(&mut self, timeouts: &Timeouts) -> Result<GcPass> {
        let now = now_ns()?;
        let snapshot = Snapshot::read(self.reader())?;
        // A flow's age is its newer entry's: an ORIGINAL entry younger
        // than the shortest timeout belongs to no expired flow, and most
        // entries are skipped before any pairing.
        let shortest = timeouts.shortest().as_nanos() as u64;
        let expired: Vec<Flow<K>> = snapshot
            .flows(|value| now.saturating_sub(K::last_seen_ns(value)) > shortest)
            .filter(|f| f.expired(now, timeouts))
            .collect();
        self.delete(&snapshot, &expired)?;
        Ok(GcPass {
            entries: snapshot.index.len(),
            expired: expired.len(),
        })
    }

    /// Deletes every flow with one of `ips` in either tuple: the flows of
    /// a removed container, which must not outlive it (its address may be
    /// handed out again). Returns how many went.
    pub fn forget(&mut self, ips: &[IpAddr]) -> Result<usize> {
        let filter = Filter {
            ips: Some(ips.to_vec()),
            port: None,
        };
        let snapshot = Snapshot::read(self.reader())?;
        let gone: Vec<Flow<K>> = snapshot
            .flows(|_| true)
            .filter(|f| f.matches(&filter))
            .collect();
        self.delete(&snapshot, &gone)?;
        Ok(gone.len())
    }

    /// Deletes `flows`' entries from the tables `snapshot` saw them in:
    /// one `BPF_MAP_DELETE_BATCH` per table, where single deletes cost a
    /// syscall per key and table (most of a pass at high connection rates).
    fn delete(&self, snapshot: &Snapshot<K>, flows: &[Flow<K>]) -> Result<()> {
        let mut per_table: Vec<Vec<K>> = vec![Vec::new(); self.tables.len()];
        for flow in flows {
            let keys = if flow.reply_key == flow.key {
                &[flow.key][..]
            } else {
                &[flow.key, flow.reply_key][..]
            };
            for key in keys {
                let held = snapshot.tables_holding(key);
                for (table, list) in per_table.iter_mut().enumerate() {
                    if held & (1 << table) != 0 {
                        list.push(*key);
                    }
                }
            }
        }
        for (table, keys) in self.tables.iter().zip(&per_table) {
            delete_batch(table.map().fd().as_fd(), keys)
                .with_context(|| format!("deleting expired flows from {}", K::WHAT))?;
        }
        Ok(())
    }

    /// The flows of the next batch of the table that pass `filter`, as
    /// JSON; `None` when the table is exhausted. Each batch is paired on
    /// its own, with a map lookup for a partner in another batch, so a
    /// listing holds one batch at a time, however big the table.
    pub fn list_batch(
        &self,
        reader: &mut BatchReader<'_, K>,
        filter: &Filter,
        timeouts: &Timeouts,
    ) -> Result<Option<Vec<Value>>> {
        let Some((table, batch)) = reader.next_batch()? else {
            return Ok(None);
        };
        let now = now_ns()?;
        let assured = &self.tables[0];
        let local: std::collections::HashMap<K, K::Value> = batch
            .into_iter()
            // An LRU copy of an assured flow is stale: the assured one shows.
            .filter(|(key, _)| table == 0 || assured.get(key, 0).is_err())
            .collect();
        let lookup = |k: &K| {
            local
                .get(k)
                .copied()
                .or_else(|| self.tables.iter().find_map(|t| t.get(k, 0).ok()))
        };
        let flows = local
            .iter()
            .filter_map(|(key, value)| pair(key, value, lookup))
            .filter(|f| f.matches(filter))
            .map(|f| f.to_json(now, timeouts))
            .collect();
        Ok(Some(flows))
    }

    /// A reader over both tables, for [`Conntrack::list_batch`].
    pub fn reader(&self) -> BatchReader<'_, K> {
        BatchReader::new(self.tables.iter().map(|t| t.map().fd().as_fd()).collect())
    }
}

/// Both tables of a family as one read saw them: every entry, and an
/// index by key that pairs a flow's two entries without a lookup (a
/// syscall) each.
struct Snapshot<K: Tuple> {
    /// In reading order: the assured table first.
    entries: Vec<(K, K::Value)>,
    /// Key → the entry that counts (the first read: an LRU copy of an
    /// assured flow is stale) and the tables holding the key, a bit each.
    index: std::collections::HashMap<K, (usize, u8), foldhash::fast::RandomState>,
}

impl<K: Tuple> Snapshot<K> {
    fn read(mut reader: BatchReader<'_, K>) -> Result<Self> {
        let mut entries = Vec::new();
        // Where each table's entries end in `entries`.
        let mut ends = Vec::new();
        while let Some((table, batch)) = reader.next_batch()? {
            entries.extend(batch);
            ends.resize(table + 1, 0);
            ends[table] = entries.len();
        }
        Ok(Self::new(entries, &ends))
    }

    /// `entries` of the tables in order, table `t`'s ending at `ends[t]`.
    fn new(entries: Vec<(K, K::Value)>, ends: &[usize]) -> Self {
        let mut index = std::collections::HashMap::with_capacity_and_hasher(
            entries.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut table = 0;
        for (at, (key, _)) in entries.iter().enumerate() {
            while ends.get(table).is_some_and(|&end| at >= end) {
                table += 1;
            }
            let bit = 1u8 << table.min(7);
            index
                .entry(*key)
                .and_modify(|(_, held): &mut (usize, u8)| *held |= bit)
                .or_insert((at, bit));
        }
        Self { entries, index }
    }

    fn get(&self, key: &K) -> Option<K::Value> {
        self.index.get(key).map(|&(at, _)| self.entries[at].1)
    }

    /// The tables holding `key`, a bit each (0: none).
    fn tables_holding(&self, key: &K) -> u8 {
        self.index.get(key).map_or(0, |&(_, held)| held)
    }

    /// The flows whose first entry (ORIGINAL, or a REPLY left alone)
    /// passes `keep`, paired with their other entry.
    fn flows(&self, keep: impl Fn(&K::Value) -> bool) -> impl Iterator<Item = Flow<K>> {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, (_, value))| keep(value))
            .filter(|(at, (key, _))| self.index.get(key).is_some_and(|&(first, _)| first == *at))
            .filter_map(|(_, (key, value))| pair(key, value, |k| self.get(k)))
    }
}

/// The flow an entry stands for, given a way to find its partner: an
/// ORIGINAL entry with its REPLY; a REPLY whose ORIGINAL is gone (LRU
/// eviction) as a flow of its own; `None` for a REPLY whose ORIGINAL will
/// produce the flow.
fn pair<K: Tuple>(
    key: &K,
    value: &K::Value,
    find: impl Fn(&K) -> Option<K::Value>,
) -> Option<Flow<K>> {
    let partner_key = K::translated(value, key.proto()).reversed();
    let partner = find(&partner_key);
    match (K::direction(value), partner) {
        (ct_dir::ORIGINAL, reply) => Some(Flow {
            key: *key,
            orig: *value,
            reply_key: partner_key,
            reply,
        }),
        (_, None) => Some(Flow {
            key: *key,
            orig: *value,
            reply_key: *key,
            reply: None,
        }),
        _ => None,
    }
}

/// `union bpf_attr`'s member for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: nix::libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: nix::libc::c_long = 27;
/// Entries per `bpf()` call.
const BATCH: usize = 4096;

/// Entries as one `BPF_MAP_LOOKUP_BATCH` returns them.
pub type Batch<K> = Vec<(K, <K as Tuple>::Value)>;

/// Walks the tables, one after the other, with `BPF_MAP_LOOKUP_BATCH`: a
/// few syscalls for 100,000s of entries, where iterating (aya 0.14 has no
/// batch API) costs two per entry.
pub struct BatchReader<'a, K: Tuple> {
    fds: Vec<BorrowedFd<'a>>,
    /// The table being walked (index into `fds`).
    current: usize,
    token: Option<u64>,
    family: std::marker::PhantomData<K>,
}

impl<'a, K: Tuple> BatchReader<'a, K> {
    fn new(fds: Vec<BorrowedFd<'a>>) -> Self {
        Self {
            fds,
            current: 0,
            token: None,
            family: std::marker::PhantomData,
        }
    }

    /// The next batch of up to [`BATCH`] entries, with the index of the
    /// table it is from; `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<(usize, Batch<K>)>> {
        let table = self.current;
        let Some(fd) = self.fds.get(table).copied() else {
            return Ok(None);
        };
        let mut keys = vec![K::default(); BATCH];
        let mut values = vec![K::Value::default(); BATCH];
        let mut next = 0u64;
        let mut attr = BatchAttr {
            in_batch: self.token.as_ref().map_or(0, |t| t as *const u64 as u64),
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at live buffers of `count` keys and values
        // and at the batch tokens, all outliving the call.
        let rc = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = std::io::Error::last_os_error();
        let n = (attr.count as usize).min(BATCH);
        if rc < 0 {
            // ENOENT: the walk is complete (the last entries came with it).
            if err.raw_os_error() != Some(nix::libc::ENOENT) {
                return Err(err).with_context(|| format!("BPF_MAP_LOOKUP_BATCH on {}", K::WHAT));
            }
            // This table is done: the next one starts afresh.
            self.current += 1;
            self.token = None;
        } else {
            self.token = Some(next);
        }
        keys.truncate(n);
        values.truncate(n);
        Ok(Some((table, keys.into_iter().zip(values).collect())))
    }
}

/// Deletes `keys` from the map with `BPF_MAP_DELETE_BATCH`, in chunks of
/// [`BATCH`]. A key gone meanwhile (LRU eviction, the datapath) stops the
/// kernel's walk with ENOENT: it is skipped and the walk goes on. Returns
/// how many were deleted.
fn delete_batch<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> Result<usize> {
    let (mut done, mut deleted) = (0, 0);
    while done < keys.len() {
        let chunk = &keys[done..keys.len().min(done + BATCH)];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at `count` live keys, outliving the call.
        let rc = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_bpf,
                BPF_MAP_DELETE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = std::io::Error::last_os_error();
        let n = (attr.count as usize).min(chunk.len());
        if rc < 0 {
            if err.raw_os_error() != Some(nix::libc::ENOENT) || n == chunk.len() {
                return Err(err).context("BPF_MAP_DELETE_BATCH");
            }
            done += 1; // the missing key
        }
        done += n;
        deleted += n;
    }
    Ok(deleted)
}

const IPPROTO_ICMPV6: u8 = 58;

fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        _ => "udp",
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        ct_kind::DNAT => "dnat",
        ct_kind::SNAT => "snat",
        ct_kind::HAIRPIN => "hairpin",
        _ => "unknown",
    }
}

/// `addr:port`, an IPv6 address in brackets.
fn endpoint(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, u16::from_be(port)).to_string()
}

fn tuple<K: Tuple>(k: &K) -> Value {
    let ([src, dst], [sport, dport]) = (k.ips(), k.ports());
    json!({
        "src": endpoint(src, sport),
        "dst": endpoint(dst, dport),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(proto: u8, flags: u8, reply_packets: Option<u64>) -> Flow<CtKey> {
        let key = CtKey {
            proto,
            ..CtKey::default()
        };
        Flow {
            key,
            orig: CtValue {
                tcp_flags: flags,
                packets: 1,
                ..CtValue::default()
            },
            reply_key: key,
            reply: reply_packets.map(|packets| CtValue {
                packets,
                ..CtValue::default()
            }),
        }
    }

    #[test]
    fn tcp_closing_needs_rst_or_fin_both_ways() {
        use ct_tcp::{FIN, RST, SYN};
        assert_eq!(TcpState::of(SYN, 0, false), TcpState::SynSent);
        assert_eq!(TcpState::of(SYN, SYN, true), TcpState::Established);
        assert_eq!(TcpState::of(SYN | FIN, SYN, true), TcpState::HalfClosed);
        assert_eq!(TcpState::of(SYN, SYN | FIN, true), TcpState::HalfClosed);
        assert_eq!(TcpState::of(SYN | FIN, SYN | FIN, true), TcpState::Closing);
        assert_eq!(TcpState::of(SYN | RST, SYN, true), TcpState::Closing);
        assert_eq!(TcpState::of(SYN, RST, true), TcpState::Closing);
        assert_eq!(TcpState::of(SYN, RST, false), TcpState::Closing);
    }

    #[test]
    fn half_closed_flows_wait_at_most_two_minutes() {
        let t = Timeouts::default();
        assert_eq!(TcpState::HalfClosed.timeout(&t), Duration::from_secs(120));
        let short = Timeouts {
            tcp_established: Duration::from_secs(30),
            ..Timeouts::default()
        };
        assert_eq!(
            TcpState::HalfClosed.timeout(&short),
            Duration::from_secs(30)
        );
        assert_eq!(TcpState::Closing.timeout(&t), t.tcp_closing);
    }

    #[test]
    fn tcp_states_pick_their_timeouts() {
        let t = Timeouts::default();
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::SYN, Some(0)).timeout(&t),
            t.tcp_unreplied
        );
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::SYN, Some(3)).timeout(&t),
            t.tcp_established
        );
        // A FIN from the original side only: half-closed, not closing.
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::FIN, Some(3)).state(),
            "HALF_CLOSED"
        );
        assert_eq!(flow(IPPROTO_TCP, ct_tcp::RST, None).state(), "CLOSING");
    }

    #[test]
    fn udp_and_icmp_timeouts() {
        let t = Timeouts::default();
        assert_eq!(flow(17, 0, Some(1)).timeout(&t), Duration::from_secs(120));
        assert_eq!(flow(17, 0, Some(0)).timeout(&t), Duration::from_secs(30));
        assert_eq!(flow(IPPROTO_ICMP, 0, Some(1)).timeout(&t), t.icmp);
    }

    /// A v4 UDP flow 10.0.0.2:`port` -> 10.0.0.1:53, untranslated: its
    /// ORIGINAL and REPLY entries, last seen at `orig_seen`/`reply_seen`.
    fn udp_flow(port: u16, orig_seen: u64, reply_seen: u64) -> [(CtKey, CtValue); 2] {
        let key = CtKey {
            src_ip: u32::from(Ipv4Addr::new(10, 0, 0, 2)).to_be(),
            dst_ip: u32::from(Ipv4Addr::new(10, 0, 0, 1)).to_be(),
            src_port: port.to_be(),
            dst_port: 53u16.to_be(),
            proto: 17,
            ..CtKey::default()
        };
        let entry = |k: CtKey, direction, seen| {
            let value = CtValue {
                nat_src_ip: k.src_ip,
                nat_dst_ip: k.dst_ip,
                nat_src_port: k.src_port,
                nat_dst_port: k.dst_port,
                direction,
                last_seen_ns: seen,
                packets: 1,
                ..CtValue::default()
            };
            (k, value)
        };
        [
            entry(key, ct_dir::ORIGINAL, orig_seen),
            entry(key.reversed(), ct_dir::REPLY, reply_seen),
        ]
    }

    #[test]
    fn a_snapshot_pairs_flows_and_knows_where_each_entry_is() {
        let s = Duration::from_secs(1).as_nanos() as u64;
        let (now, t) = (1000 * s, Timeouts::default());
        let old = now - 200 * s;
        // Assured: a flow idle one way only, and an idle one. The LRU: a
        // stale copy of the first (made when it was assured), and an idle
        // flow of its own.
        let [live_o, live_r] = udp_flow(1000, old, now - s);
        let [idle_o, idle_r] = udp_flow(2000, old, old);
        let stale_copy = (
            live_o.0,
            CtValue {
                last_seen_ns: 0,
                ..live_o.1
            },
        );
        let [lru_o, lru_r] = udp_flow(3000, old, old);
        let entries = vec![live_o, live_r, idle_o, idle_r, stale_copy, lru_o, lru_r];
        let snapshot = Snapshot::new(entries, &[4, 7]);

        assert_eq!(snapshot.index.len(), 6, "the stale copy has the same key");
        assert_eq!(snapshot.tables_holding(&live_o.0), 0b11);
        assert_eq!(snapshot.tables_holding(&idle_r.0), 0b01);
        assert_eq!(snapshot.tables_holding(&lru_r.0), 0b10);
        let shortest = t.shortest().as_nanos() as u64;
        let expired: Vec<Flow<CtKey>> = snapshot
            .flows(|v| now.saturating_sub(v.last_seen_ns) > shortest)
            .filter(|f| f.expired(now, &t))
            .collect();
        let mut ports: Vec<u16> = expired
            .iter()
            .map(|f| u16::from_be(f.key.src_port))
            .collect();
        ports.sort_unstable();
        // The live flow's REPLY is fresh: neither its ORIGINAL nor the
        // stale copy stands for it.
        assert_eq!(ports, [2000, 3000]);
        assert!(expired.iter().all(|f| f.reply.is_some()));
    }

    #[test]
    fn filters_match_either_tuple() {
        let key = CtKey {
            src_ip: u32::from(Ipv4Addr::new(172, 17, 0, 2)).to_be(),
            dst_ip: u32::from(Ipv4Addr::new(198, 18, 0, 2)).to_be(),
            src_port: 5000u16.to_be(),
            dst_port: 80u16.to_be(),
            proto: IPPROTO_TCP,
            ..CtKey::default()
        };
        let f = Flow {
            key,
            orig: CtValue {
                nat_src_ip: u32::from(Ipv4Addr::new(198, 18, 0, 1)).to_be(),
                nat_dst_ip: key.dst_ip,
                nat_src_port: 40000u16.to_be(),
                nat_dst_port: key.dst_port,
                ..CtValue::default()
            },
            reply_key: key,
            reply: None,
        };
        let by_ip = |ip: Ipv4Addr| Filter {
            ips: Some(vec![IpAddr::V4(ip)]),
            port: None,
        };
        let by_port = |port| Filter {
            ips: None,
            port: Some(port),
        };
        assert!(f.matches(&Filter::default()));
        assert!(f.matches(&by_ip(Ipv4Addr::new(172, 17, 0, 2))));
        assert!(f.matches(&by_ip(Ipv4Addr::new(198, 18, 0, 1))));
        assert!(!f.matches(&by_ip(Ipv4Addr::new(172, 17, 0, 3))));
        assert!(f.matches(&by_port(40000)));
        assert!(f.matches(&by_port(80)));
        assert!(!f.matches(&by_port(81)));
    }

    #[test]
    fn v6_flows_match_and_print_as_v6() {
        let (c, peer, host): (Ipv6Addr, Ipv6Addr, Ipv6Addr) = (
            "fd00:95::2".parse().unwrap(),
            "2001:2::2".parse().unwrap(),
            "2001:2::1".parse().unwrap(),
        );
        let key = Ct6Key {
            src_ip: c.octets(),
            dst_ip: peer.octets(),
            src_port: 5000u16.to_be(),
            dst_port: 80u16.to_be(),
            proto: IPPROTO_TCP,
            ..Ct6Key::default()
        };
        let f = Flow {
            key,
            orig: Ct6Value {
                nat_src_ip: host.octets(),
                nat_dst_ip: key.dst_ip,
                nat_src_port: 40000u16.to_be(),
                nat_dst_port: key.dst_port,
                kind: ct_kind::SNAT,
                tcp_flags: ct_tcp::SYN,
                packets: 1,
                ..Ct6Value::default()
            },
            reply_key: key,
            reply: None,
        };
        let by_ip = |ip: Ipv6Addr| Filter {
            ips: Some(vec![IpAddr::V6(ip)]),
            port: None,
        };
        assert!(f.matches(&by_ip(c)));
        assert!(f.matches(&by_ip(host)));
        assert!(!f.matches(&by_ip("fd00:95::3".parse().unwrap())));
        let json = f.to_json(0, &Timeouts::default());
        assert_eq!(json["family"], "ipv6");
        assert_eq!(json["original"]["src"], "[fd00:95::2]:5000");
        assert_eq!(json["translated"]["src"], "[2001:2::1]:40000");
        assert_eq!(json["state"], "SYN_SENT");
    }
}
