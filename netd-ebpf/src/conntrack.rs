//! Connection tracking: two entries per flow. ORIGINAL is keyed by the
//! tuple the first packet had and holds the translated tuple T; REPLY is
//! keyed by T reversed and holds the original tuple reversed. Every packet
//! of either direction is then one lookup and one rewrite.
//!
//! Two tables. New flows go into `NETD_CONNTRACK`, an LRU: a flood of new
//! flows evicts only its own kind (unanswered flows), as Linux's early drop
//! does. An assured flow (see `settle`) is copied to `NETD_CT_ASSURED`, a
//! plain hash that nothing evicts and that lookups try first; its LRU
//! copies age out. The GC expires flows in both. Inserts never overwrite: a new flow whose reply tuple is
//! another flow's, in either table, is refused (`Refused::Clash`), as Linux
//! conntrack drops it.
//!
//! Creating a flow (the translation, the port choice) is `nat`'s.
//!
//! TCP state is tracked per direction like Linux conntrack does in spirit:
//! an RST or FIN counts only near the sequence number the sender is at,
//! and a SYN starts the flow anew once the old connection on that tuple
//! closed.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use netd_common::{CtKey, CtValue, IPPROTO_TCP, ct_dir, ct_tcp};

use crate::{
    maps::{NETD_CONNTRACK, NETD_CT_ASSURED},
    packet::Packet,
};

const EEXIST: i32 = 17;

/// Why a new flow was not created.
pub enum Refused {
    /// The table is full.
    Full,
    /// Its reply tuple belongs to another flow.
    Clash,
    /// No free MASQUERADE port (`nat::create_with_port`).
    NoPort,
}

/// Which table an entry is in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    New,
    Assured,
}

/// An entry found by [`lookup`].
#[derive(Clone, Copy)]
pub struct Entry {
    pub value: *mut CtValue,
    pub tier: Tier,
}

/// The entry of `key`: assured flows first (most packets are theirs).
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<Entry> {
    if let Some(value) = NETD_CT_ASSURED.get_ptr_mut(key) {
        return Some(Entry {
            value,
            tier: Tier::Assured,
        });
    }
    NETD_CONNTRACK.get_ptr_mut(key).map(|value| Entry {
        value,
        tier: Tier::New,
    })
}

/// The key of the flow's other entry: an entry's translated tuple,
/// reversed (the same rule both ways).
#[inline(always)]
pub fn other_key(key: &CtKey, value: &CtValue) -> CtKey {
    value.translated(key.proto).reversed()
}

/// Makes a flow assured after a packet updated its entry `key`: when its
/// originator sends again after an answer (the handshake's final ACK for
/// TCP, a second datagram for UDP), as Linux's IPS_ASSURED. An answer alone
/// is not enough: a SYN flood is answered with SYN-ACKs, and must stay
/// evictable. Err(Full): the assured table is full, the flow stays in the
/// LRU.
///
/// Each connection costs few map writes this way (the datapath's new
/// connections/s depend on it): the flow is copied, not moved (the LRU's
/// copies age out; lookups find the assured one first), and a closed flow
/// stays assured until the GC collects it (the closing timeout).
/// Not inlined: its copies of both entries would otherwise sit in the
/// programs' own stack frame, which the verifier limits (with the calls
/// below it) to 512 bytes.
#[inline(never)]
pub fn settle(key: &CtKey, entry: &Entry, pkt: &Packet) -> Result<(), Refused> {
    if entry.tier != Tier::New || is_syn(pkt) {
        return Ok(());
    }
    // SAFETY: a pointer from a map lookup, valid for this program run.
    let value = unsafe { *entry.value };
    let closing = value.tcp_flags & (ct_tcp::FIN | ct_tcp::RST) != 0;
    if value.direction != ct_dir::ORIGINAL || closing {
        return Ok(());
    }
    let other = other_key(key, &value);
    let Some(peer) = NETD_CONNTRACK.get_ptr(&other) else {
        return Ok(()); // half a flow (evicted meanwhile): the GC's
    };
    // SAFETY: as above.
    let peer = unsafe { *peer };
    if peer.packets == 0 || peer.tcp_flags & (ct_tcp::FIN | ct_tcp::RST) != 0 {
        return Ok(());
    }
    promote(key, &value, &other, &peer)
}

/// Copies both entries of a flow to NETD_CT_ASSURED.
#[inline(always)]
fn promote(key: &CtKey, value: &CtValue, other: &CtKey, peer: &CtValue) -> Result<(), Refused> {
    if NETD_CT_ASSURED
        .insert(other, peer, u64::from(BPF_NOEXIST))
        .is_err()
    {
        return Err(Refused::Full);
    }
    if NETD_CT_ASSURED
        .insert(key, value, u64::from(BPF_NOEXIST))
        .is_err()
    {
        let _ = NETD_CT_ASSURED.remove(other);
        return Err(Refused::Full);
    }
    Ok(())
}

/// TCP flag bits of the wire header.
const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;

/// A TCP segment that opens a connection: SYN without ACK.
#[inline(always)]
pub fn is_syn(pkt: &Packet) -> bool {
    pkt.tcp_flags & (TH_SYN | TH_ACK) == TH_SYN
}

/// Sequence number just past this segment (SYN and FIN count as one).
#[inline(always)]
fn seq_end(pkt: &Packet) -> u32 {
    let mut end = pkt.tcp_seq.wrapping_add(pkt.tcp_payload);
    if pkt.tcp_flags & TH_SYN != 0 {
        end = end.wrapping_add(1);
    }
    if pkt.tcp_flags & TH_FIN != 0 {
        end = end.wrapping_add(1);
    }
    end
}

/// `seq` is near `expected` (either side, within `ct_tcp::WINDOW`).
#[inline(always)]
fn near(seq: u32, expected: u32) -> bool {
    seq.wrapping_sub(expected).wrapping_add(ct_tcp::WINDOW) <= 2 * ct_tcp::WINDOW
}

/// Records a packet on its entry: time, counters and, for TCP, the
/// direction's state. Returns true when the packet is a SYN that reopens
/// a closed flow: the caller resets the other direction's entry.
#[inline(always)]
pub fn touch(entry: *mut CtValue, pkt: &Packet) -> bool {
    // SAFETY: a pointer from a map lookup, valid for this program run.
    // Concurrent updates from other CPUs may lose an increment; these are
    // statistics and per-direction state that only moves forward.
    unsafe {
        (*entry).last_seen_ns = bpf_ktime_get_coarse_ns();
        (*entry).packets += 1;
        (*entry).bytes += u64::from(pkt.len);
    }
    if pkt.tuple.proto != IPPROTO_TCP {
        return false;
    }
    // SAFETY: as above.
    let (flags, tracked) = unsafe { ((*entry).tcp_flags, (*entry).tcp_seq_end) };
    if is_syn(pkt) && flags & (ct_tcp::FIN | ct_tcp::RST) != 0 {
        // A new connection over a closed one on the same tuple.
        unsafe {
            (*entry).tcp_flags = ct_tcp::SYN;
            (*entry).tcp_seq_end = seq_end(pkt);
        }
        return true;
    }
    let plausible = tracked == 0 || near(pkt.tcp_seq, tracked);
    let mut add = 0;
    if pkt.tcp_flags & TH_SYN != 0 {
        add |= ct_tcp::SYN;
    }
    if plausible && pkt.tcp_flags & TH_FIN != 0 {
        add |= ct_tcp::FIN;
    }
    if plausible && pkt.tcp_flags & TH_RST != 0 {
        add |= ct_tcp::RST;
    }
    let end = seq_end(pkt);
    // SAFETY: as above.
    unsafe {
        if add != 0 && flags & add != add {
            (*entry).tcp_flags = flags | add;
        }
        // Only forward, and only from plausible segments: a forged
        // segment far away must not move the window for the next one.
        if plausible && (tracked == 0 || (end.wrapping_sub(tracked) as i32) > 0) {
            (*entry).tcp_seq_end = end;
        }
    }
    false
}

/// Clears the TCP state of the entry at `key` (the reply direction of a
/// reopened flow).
#[inline(always)]
pub fn reset_tcp(key: &CtKey) {
    if let Some(entry) = lookup(key) {
        // SAFETY: a pointer from a map lookup, valid for this program run.
        unsafe {
            (*entry.value).tcp_flags = 0;
            (*entry.value).tcp_seq_end = 0;
        }
    }
}

/// A new flow's entry for `direction`, translating to `t`.
#[inline(always)]
pub fn new_entry(t: &CtKey, kind: u8, direction: u8, pkt: &Packet) -> CtValue {
    let original = direction == ct_dir::ORIGINAL;
    let tcp = original && pkt.tuple.proto == IPPROTO_TCP;
    CtValue {
        nat_src_ip: t.src_ip,
        nat_dst_ip: t.dst_ip,
        nat_src_port: t.src_port,
        nat_dst_port: t.dst_port,
        kind,
        direction,
        tcp_flags: if tcp && pkt.tcp_flags & TH_SYN != 0 {
            ct_tcp::SYN
        } else {
            0
        },
        pad: 0,
        tcp_seq_end: if tcp { seq_end(pkt) } else { 0 },
        pad2: 0,
        last_seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
        packets: u64::from(original),
        bytes: if original { u64::from(pkt.len) } else { 0 },
    }
}

/// Inserts a new entry; never replaces one, in either table.
#[inline(always)]
pub fn insert_new(key: &CtKey, value: &CtValue) -> Result<(), Refused> {
    if NETD_CT_ASSURED.get_ptr(key).is_some() {
        return Err(Refused::Clash);
    }
    insert_lru(key, value)
}

/// Inserts into the LRU without replacing an entry there.
#[inline(always)]
fn insert_lru(key: &CtKey, value: &CtValue) -> Result<(), Refused> {
    match NETD_CONNTRACK.insert(key, value, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(()),
        Err(e) if e == -EEXIST => Err(Refused::Clash),
        Err(_) => Err(Refused::Full),
    }
}

/// Inserts the ORIGINAL entry once the REPLY one is in; on failure (another
/// CPU created the same flow meanwhile, or the table filled up) the REPLY
/// entry is taken back, so no half flow stays behind. Its key is the
/// packet's own tuple, which `lookup` just missed in both tables; only the
/// LRU can have gained it since (another CPU creating the same flow), and
/// the insert there does not overwrite: no second look in
/// `NETD_CT_ASSURED`, which only ever gets a flow out of the LRU.
#[inline(always)]
pub fn insert_original(pkt: &Packet, t: &CtKey, kind: u8) -> Result<(), Refused> {
    let original = new_entry(t, kind, ct_dir::ORIGINAL, pkt);
    insert_lru(&pkt.tuple, &original).inspect_err(|_| {
        let _ = NETD_CONNTRACK.remove(&t.reversed());
    })
}
