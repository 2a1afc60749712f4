//! Connection tracking: two entries per flow. ORIGINAL is keyed by the
//! tuple the first packet had and holds the translated tuple T; REPLY is
//! keyed by T reversed and holds the original tuple reversed. Every packet
//! of either direction is then one lookup and one rewrite.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns},
};
use netd_common::{CtKey, CtValue, ct_dir, ct_tcp};

use crate::{maps::NETD_CONNTRACK, packet::Packet};

/// Attempts at finding a free MASQUERADE port before giving up.
const PORT_TRIES: u32 = 32;

#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<*mut CtValue> {
    NETD_CONNTRACK.get_ptr_mut(key)
}

/// Records a packet on an entry: time, counters, sticky TCP flags.
#[inline(always)]
pub fn touch(entry: *mut CtValue, pkt: &Packet) {
    let flags = tcp_flags(pkt.tcp_flags);
    // SAFETY: a pointer from a map lookup, valid for this program run.
    // Concurrent updates from other CPUs may lose an increment; these are
    // statistics and timestamps, not state the datapath decides on.
    unsafe {
        (*entry).last_seen_ns = bpf_ktime_get_coarse_ns();
        (*entry).packets += 1;
        (*entry).bytes += u64::from(pkt.len);
        if flags != 0 && (*entry).tcp_flags & flags != flags {
            (*entry).tcp_flags |= flags;
        }
    }
}

#[inline(always)]
fn tcp_flags(raw: u8) -> u8 {
    let mut out = 0;
    if raw & 0x01 != 0 {
        out |= ct_tcp::FIN;
    }
    if raw & 0x02 != 0 {
        out |= ct_tcp::SYN;
    }
    if raw & 0x04 != 0 {
        out |= ct_tcp::RST;
    }
    out
}

#[inline(always)]
fn entry(t: &CtKey, kind: u8, direction: u8, pkt: &Packet) -> CtValue {
    CtValue {
        nat_src_ip: t.src_ip,
        nat_dst_ip: t.dst_ip,
        nat_src_port: t.src_port,
        nat_dst_port: t.dst_port,
        kind,
        direction,
        tcp_flags: if direction == ct_dir::ORIGINAL {
            tcp_flags(pkt.tcp_flags)
        } else {
            0
        },
        pad: 0,
        last_seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
        packets: if direction == ct_dir::ORIGINAL { 1 } else { 0 },
        bytes: if direction == ct_dir::ORIGINAL {
            u64::from(pkt.len)
        } else {
            0
        },
    }
}

/// Creates a flow whose translation is fully known (DNAT): both entries
/// replace whatever an older flow with the same tuple left.
#[inline(always)]
pub fn create(pkt: &Packet, t: &CtKey, kind: u8) -> Result<(), ()> {
    let orig = &pkt.tuple;
    let reply = entry(&orig.reversed(), kind, ct_dir::REPLY, pkt);
    NETD_CONNTRACK
        .insert(t.reversed(), reply, u64::from(BPF_ANY))
        .map_err(|_| ())?;
    NETD_CONNTRACK
        .insert(
            *orig,
            entry(t, kind, ct_dir::ORIGINAL, pkt),
            u64::from(BPF_ANY),
        )
        .map_err(|_| ())
}

/// Creates a flow whose source port (ICMP: echo id) is to be chosen: the
/// original port if its REPLY tuple is free, else a random one in
/// [min, max]. The REPLY entry is inserted with NOEXIST, which is what
/// makes the choice collision-free, also between CPUs racing for a port.
/// Returns the translated tuple.
#[inline(always)]
pub fn create_with_port(pkt: &Packet, t: &CtKey, kind: u8, min: u32, max: u32) -> Option<CtKey> {
    let orig = &pkt.tuple;
    let reply = entry(&orig.reversed(), kind, ct_dir::REPLY, pkt);
    let span = max.saturating_sub(min) + 1;
    let mut port = u16::from_be(orig.src_port);
    let mut chosen = *t;
    for _ in 0..PORT_TRIES {
        chosen.src_port = port.to_be();
        if NETD_CONNTRACK
            .insert(chosen.reversed(), reply, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            let original = entry(&chosen, kind, ct_dir::ORIGINAL, pkt);
            NETD_CONNTRACK
                .insert(*orig, original, u64::from(BPF_ANY))
                .ok()?;
            return Some(chosen);
        }
        let random = unsafe { bpf_get_prandom_u32() };
        port = (min + random % span) as u16;
    }
    None
}
