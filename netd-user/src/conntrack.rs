//! Userspace side of connection tracking: the garbage collector that
//! expires flows (the datapath only creates and refreshes entries), and
//! the listing behind `netd conntrack ls`.
//!
//! Timeouts follow Linux conntrack's spirit with Cilium's values: long for
//! established TCP, short for unanswered and closing flows, and UDP/ICMP
//! in between. A flow's age is the newer `last_seen` of its two entries.

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, IterableMap, Map, MapData};
use netd_common::{CtKey, CtValue, IPPROTO_ICMP, IPPROTO_TCP, ct_dir, ct_kind, ct_tcp, map_names};
use nix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_unreplied: Duration,
    pub tcp_closing: Duration,
    pub udp: Duration,
    pub udp_unreplied: Duration,
    pub icmp: Duration,
}

impl Timeouts {
    /// Defaults, with the replied-UDP timeout `udp` (`--ct-udp-timeout`).
    pub fn new(tcp_established: Duration, udp: Duration) -> Self {
        Self {
            tcp_established,
            tcp_unreplied: Duration::from_secs(60),
            tcp_closing: Duration::from_secs(10),
            udp,
            udp_unreplied: udp.min(Duration::from_secs(30)),
            icmp: Duration::from_secs(30),
        }
    }
}

/// A flow: its ORIGINAL entry and, when present, its REPLY entry.
struct Flow {
    key: CtKey,
    orig: CtValue,
    reply_key: CtKey,
    reply: Option<CtValue>,
}

impl Flow {
    fn last_seen(&self) -> u64 {
        self.reply.map_or(self.orig.last_seen_ns, |r| {
            r.last_seen_ns.max(self.orig.last_seen_ns)
        })
    }

    fn replied(&self) -> bool {
        self.reply.is_some_and(|r| r.packets > 0)
    }

    fn tcp_flags(&self) -> u8 {
        self.orig.tcp_flags | self.reply.map_or(0, |r| r.tcp_flags)
    }

    fn state(&self) -> &'static str {
        match self.key.proto {
            IPPROTO_TCP if self.tcp_flags() & (ct_tcp::FIN | ct_tcp::RST) != 0 => "CLOSING",
            IPPROTO_TCP if self.replied() => "ESTABLISHED",
            IPPROTO_TCP => "SYN_SENT",
            _ if self.replied() => "REPLIED",
            _ => "UNREPLIED",
        }
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        match (self.key.proto, self.state()) {
            (IPPROTO_TCP, "CLOSING") => t.tcp_closing,
            (IPPROTO_TCP, "ESTABLISHED") => t.tcp_established,
            (IPPROTO_TCP, _) => t.tcp_unreplied,
            (IPPROTO_ICMP, _) => t.icmp,
            (_, "REPLIED") => t.udp,
            _ => t.udp_unreplied,
        }
    }
}

/// The conntrack map, opened from its pin: the GC runs beside the daemon's
/// request handling without sharing (or locking) its map handles.
pub struct Conntrack {
    /// `map_names::CT_TABLES`: new flows (LRU) and assured flows.
    tables: Vec<HashMap<MapData, CtKey, CtValue>>,
}

pub fn now_ns() -> Result<u64> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).context("reading CLOCK_MONOTONIC")?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}

impl Conntrack {
    /// Both conntrack tables, from their pins.
    pub fn open(bpffs: &Path) -> Result<Self> {
        let tables = map_names::CT_TABLES
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

    /// Every flow: both tables read in batches, then paired up in memory (a
    /// flow's entries are in one table, but one may be moving as we read).
    fn flows(&self) -> Result<Vec<Flow>> {
        let mut entries = std::collections::HashMap::<CtKey, CtValue>::new();
        for table in &self.tables {
            entries.extend(read_all(table.map().fd().as_fd())?);
        }
        let mut flows = Vec::new();
        for (key, value) in &entries {
            let reply_key = value.translated(key.proto).reversed();
            let paired = entries.get(&reply_key).copied();
            let flow = match (value.direction, paired) {
                (ct_dir::ORIGINAL, reply) => Flow {
                    key: *key,
                    orig: *value,
                    reply_key,
                    reply,
                },
                // A REPLY whose ORIGINAL is gone (LRU eviction): its own flow.
                (_, None) => Flow {
                    key: *key,
                    orig: *value,
                    reply_key: *key,
                    reply: None,
                },
                _ => continue,
            };
            flows.push(flow);
        }
        Ok(flows)
    }

    /// Deletes expired flows (both entries, from whichever table holds
    /// them); returns how many.
    pub fn gc(&mut self, timeouts: &Timeouts) -> Result<usize> {
        let now = now_ns()?;
        let expired: Vec<Flow> = self
            .flows()?
            .into_iter()
            .filter(|f| now.saturating_sub(f.last_seen()) > f.timeout(timeouts).as_nanos() as u64)
            .collect();
        for flow in &expired {
            // Either may be in the other table or gone (LRU, racing GC).
            for table in &mut self.tables {
                let _ = table.remove(&flow.key);
                let _ = table.remove(&flow.reply_key);
            }
        }
        Ok(expired.len())
    }

    /// One JSON object per flow, for `netd conntrack ls`.
    pub fn list(&self, timeouts: &Timeouts) -> Result<Value> {
        let now = now_ns()?;
        let flows = self.flows()?.into_iter().map(|f| {
            let idle = Duration::from_nanos(now.saturating_sub(f.last_seen()));
            let t = f.orig.translated(f.key.proto);
            json!({
                "proto": proto_name(f.key.proto),
                "kind": kind_name(f.orig.kind),
                "state": f.state(),
                "original": tuple(&f.key),
                "translated": tuple(&t),
                "packets": f.orig.packets,
                "bytes": f.orig.bytes,
                "reply_packets": f.reply.map_or(0, |r| r.packets),
                "reply_bytes": f.reply.map_or(0, |r| r.bytes),
                "idle_secs": idle.as_secs(),
                "expires_in_secs": f.timeout(timeouts).saturating_sub(idle).as_secs(),
            })
        });
        Ok(Value::Array(flows.collect()))
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
/// Entries per `bpf()` call.
const BATCH: usize = 4096;

/// Reads the whole table with `BPF_MAP_LOOKUP_BATCH`: a few syscalls for
/// 100,000s of entries, where iterating (aya 0.14 has no batch API) costs
/// two per entry.
fn read_all(fd: BorrowedFd<'_>) -> Result<Vec<(CtKey, CtValue)>> {
    let mut out = Vec::new();
    let mut keys = vec![CtKey::default(); BATCH];
    let mut values = vec![CtValue::default(); BATCH];
    let (mut token, mut first) = (0u64, true);
    loop {
        let mut next = 0u64;
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token as *const u64 as u64
            },
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
        let n = attr.count as usize;
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if rc < 0 {
            // ENOENT: the walk is complete (the last entries came with it).
            if err.raw_os_error() == Some(nix::libc::ENOENT) {
                return Ok(out);
            }
            return Err(err).context("BPF_MAP_LOOKUP_BATCH on the conntrack map");
        }
        token = next;
        first = false;
    }
}

fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_ICMP => "icmp",
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

fn ip(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(raw))
}

fn tuple(k: &CtKey) -> Value {
    json!({
        "src": format!("{}:{}", ip(k.src_ip), u16::from_be(k.src_port)),
        "dst": format!("{}:{}", ip(k.dst_ip), u16::from_be(k.dst_port)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(proto: u8, flags: u8, reply_packets: Option<u64>) -> Flow {
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
    fn tcp_states_pick_their_timeouts() {
        let t = Timeouts::new(Duration::from_secs(21600), Duration::from_secs(120));
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::SYN, Some(0)).timeout(&t),
            t.tcp_unreplied
        );
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::SYN, Some(3)).timeout(&t),
            t.tcp_established
        );
        assert_eq!(
            flow(IPPROTO_TCP, ct_tcp::FIN, Some(3)).timeout(&t),
            t.tcp_closing
        );
        assert_eq!(flow(IPPROTO_TCP, ct_tcp::RST, None).state(), "CLOSING");
    }

    #[test]
    fn udp_and_icmp_timeouts() {
        let t = Timeouts::new(Duration::from_secs(21600), Duration::from_secs(120));
        assert_eq!(flow(17, 0, Some(1)).timeout(&t), Duration::from_secs(120));
        assert_eq!(flow(17, 0, Some(0)).timeout(&t), Duration::from_secs(30));
        assert_eq!(flow(IPPROTO_ICMP, 0, Some(1)).timeout(&t), t.icmp);
    }
}
