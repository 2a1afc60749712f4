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
//!
//! One implementation for both address families: the functions are
//! generic over [`Family`] (its key, value and two tables: [`V4`],
//! [`V6`]) and [`Segment`] (what a packet says about its flow), so IPv4
//! and IPv6 share every rule. IPv4 gets them monomorphised and inlined as
//! if written out; IPv6's callers in `nat6` are out of line.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use core::{
    mem::MaybeUninit,
    ptr::{self, addr_of_mut},
};
use netd_common::{Ct6Key, Ct6Value, CtKey, CtValue, IPPROTO_TCP, ct_dir, ct_tcp};

pub use crate::segment::{Seg, Segment};
use crate::{
    maps::{NETD_CONNTRACK, NETD_CT_ASSURED, NETD_CT6, NETD_CT6_ASSURED, NETD_SCRATCH6},
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

/// Where the bookkeeping fields of an entry are (a map value): the same
/// fields in both families' values.
pub struct Fields {
    pub direction: *mut u8,
    pub tcp_flags: *mut u8,
    pub tcp_seq_end: *mut u32,
    pub last_seen_ns: *mut u64,
    pub packets: *mut u64,
    pub bytes: *mut u64,
}

/// An address family's conntrack: its key and value, its two tables.
pub trait Family {
    type Key: Copy;
    type Value: Copy;
    /// The entry of `key` in `tier`'s table.
    fn get(tier: Tier, key: &Self::Key) -> Option<*mut Self::Value>;
    /// Inserts without replacing (BPF_NOEXIST); Err: the helper's code.
    fn insert(tier: Tier, key: &Self::Key, value: &Self::Value) -> Result<(), i32>;
    fn remove(tier: Tier, key: &Self::Key);
    /// The key of the flow's other entry: an entry's translated tuple,
    /// reversed (the same rule both ways).
    fn other_key(key: &Self::Key, value: &Self::Value) -> Self::Key;
    fn fields(value: *mut Self::Value) -> Fields;
    /// Where `settle` keeps the other entry's key: `tmp` on the stack for
    /// IPv4; the IPv6 path's per-CPU room (`tmp` unused), as its frames
    /// sit beneath the IPv4 programs' own.
    fn room(tmp: &mut MaybeUninit<Self::Key>) -> Option<&mut Self::Key>;
}

/// IPv4: `NETD_CONNTRACK` and `NETD_CT_ASSURED`.
pub struct V4;
/// IPv6: `NETD_CT6` and `NETD_CT6_ASSURED`.
pub struct V6;

/// The same `Family` impl for each family's types and maps.
macro_rules! family {
    ($family:ty, $key:ty, $value:ty, $new:ident, $assured:ident, $room:ident) => {
        impl Family for $family {
            type Key = $key;
            type Value = $value;

            #[inline(always)]
            fn get(tier: Tier, key: &$key) -> Option<*mut $value> {
                match tier {
                    Tier::Assured => $assured.get_ptr_mut(key),
                    Tier::New => $new.get_ptr_mut(key),
                }
            }

            #[inline(always)]
            fn insert(tier: Tier, key: &$key, value: &$value) -> Result<(), i32> {
                let flags = u64::from(BPF_NOEXIST);
                match tier {
                    Tier::Assured => $assured.insert(key, value, flags),
                    Tier::New => $new.insert(key, value, flags),
                }
            }

            #[inline(always)]
            fn remove(tier: Tier, key: &$key) {
                let _ = match tier {
                    Tier::Assured => $assured.remove(key),
                    Tier::New => $new.remove(key),
                };
            }

            #[inline(always)]
            fn other_key(key: &$key, value: &$value) -> $key {
                value.translated(key.proto).reversed()
            }

            #[inline(always)]
            fn fields(v: *mut $value) -> Fields {
                // SAFETY: field addresses within a map value; nothing is
                // read or written here.
                unsafe {
                    Fields {
                        direction: addr_of_mut!((*v).direction),
                        tcp_flags: addr_of_mut!((*v).tcp_flags),
                        tcp_seq_end: addr_of_mut!((*v).tcp_seq_end),
                        last_seen_ns: addr_of_mut!((*v).last_seen_ns),
                        packets: addr_of_mut!((*v).packets),
                        bytes: addr_of_mut!((*v).bytes),
                    }
                }
            }

            #[inline(always)]
            fn room(tmp: &mut MaybeUninit<$key>) -> Option<&mut $key> {
                $room(tmp)
            }
        }
    };
}

family!(V4, CtKey, CtValue, NETD_CONNTRACK, NETD_CT_ASSURED, room_v4);
family!(V6, Ct6Key, Ct6Value, NETD_CT6, NETD_CT6_ASSURED, room_v6);

#[inline(always)]
fn room_v4(tmp: &mut MaybeUninit<CtKey>) -> Option<&mut CtKey> {
    Some(tmp.write(CtKey::default()))
}

#[inline(always)]
fn room_v6(_: &mut MaybeUninit<Ct6Key>) -> Option<&mut Ct6Key> {
    // SAFETY: the per-CPU room's key, which no caller of `settle` holds.
    NETD_SCRATCH6
        .get_ptr_mut(0)
        .map(|p| unsafe { &mut (*p).room.key })
}

impl Segment for Packet {
    #[inline(always)]
    fn proto(&self) -> u8 {
        self.tuple.proto
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn tcp_flags(&self) -> u8 {
        self.tcp_flags
    }
    #[inline(always)]
    fn tcp_seq(&self) -> u32 {
        self.tcp_seq
    }
    #[inline(always)]
    fn tcp_payload(&self) -> u32 {
        self.tcp_payload
    }
}

/// An entry found by [`lookup`].
pub struct Entry<F: Family> {
    pub value: *mut F::Value,
    pub tier: Tier,
}

impl<F: Family> Clone for Entry<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Family> Copy for Entry<F> {}

/// The entry of `key`: assured flows first (most packets are theirs).
#[inline(always)]
pub fn lookup<F: Family>(key: &F::Key) -> Option<Entry<F>> {
    if let Some(value) = F::get(Tier::Assured, key) {
        return Some(Entry {
            value,
            tier: Tier::Assured,
        });
    }
    F::get(Tier::New, key).map(|value| Entry {
        value,
        tier: Tier::New,
    })
}

/// Makes a flow assured after a packet updated its entry `key`: when its
/// originator sends again after an answer (the handshake's final ACK for
/// TCP, a second datagram for UDP), as Linux's IPS_ASSURED. An answer alone
/// is not enough: a SYN flood is answered with SYN-ACKs, and must stay
/// evictable. `syn`: the packet opens a connection ([`is_syn`]). Err(Full):
/// the assured table is full, the flow stays in the LRU.
///
/// Each connection costs few map writes this way (the datapath's new
/// connections/s depend on it): the flow is copied, not moved (the LRU's
/// copies age out; lookups find the assured one first), and a closed flow
/// stays assured until the GC collects it (the closing timeout).
/// Not inlined, and the entries are copied map to map (the helper reads
/// them where they are), never onto the stack: the verifier limits the
/// programs' frames with the calls below them to 512 bytes, and an IPv6
/// entry is 72.
#[inline(never)]
pub fn settle<F: Family>(key: &F::Key, entry: &Entry<F>, syn: bool) -> Result<(), Refused> {
    if entry.tier != Tier::New || syn {
        return Ok(());
    }
    let f = F::fields(entry.value);
    // SAFETY: a pointer from a map lookup, valid for this program run.
    let (direction, flags) = unsafe { (*f.direction, *f.tcp_flags) };
    let closing = flags & (ct_tcp::FIN | ct_tcp::RST) != 0;
    if direction != ct_dir::ORIGINAL || closing {
        return Ok(());
    }
    // SAFETY: as above.
    let value = unsafe { &*entry.value };
    let mut tmp = MaybeUninit::uninit();
    let Some(other) = F::room(&mut tmp) else {
        return Ok(());
    };
    *other = F::other_key(key, value);
    let other = &*other;
    let Some(peer) = F::get(Tier::New, other) else {
        return Ok(()); // half a flow (evicted meanwhile): the GC's
    };
    let f = F::fields(peer);
    // SAFETY: as above.
    let (packets, flags) = unsafe { (*f.packets, *f.tcp_flags) };
    if packets == 0 || flags & (ct_tcp::FIN | ct_tcp::RST) != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    promote::<F>(key, value, other, unsafe { &*peer })
}

/// Copies both entries of a flow to the assured table.
#[inline(always)]
fn promote<F: Family>(
    key: &F::Key,
    value: &F::Value,
    other: &F::Key,
    peer: &F::Value,
) -> Result<(), Refused> {
    if F::insert(Tier::Assured, other, peer).is_err() {
        return Err(Refused::Full);
    }
    if F::insert(Tier::Assured, key, value).is_err() {
        F::remove(Tier::Assured, other);
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
pub fn is_syn<S: Segment>(seg: &S) -> bool {
    seg.tcp_flags() & (TH_SYN | TH_ACK) == TH_SYN
}

/// Sequence number just past this segment (SYN and FIN count as one).
#[inline(always)]
fn seq_end<S: Segment>(seg: &S) -> u32 {
    let mut end = seg.tcp_seq().wrapping_add(seg.tcp_payload());
    if seg.tcp_flags() & TH_SYN != 0 {
        end = end.wrapping_add(1);
    }
    if seg.tcp_flags() & TH_FIN != 0 {
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
pub fn touch<F: Family, S: Segment>(entry: *mut F::Value, seg: &S) -> bool {
    let f = F::fields(entry);
    // SAFETY: a pointer from a map lookup, valid for this program run.
    // Concurrent updates from other CPUs may lose an increment; these are
    // statistics and per-direction state that only moves forward.
    unsafe {
        *f.last_seen_ns = bpf_ktime_get_coarse_ns();
        *f.packets += 1;
        *f.bytes += u64::from(seg.len());
    }
    if seg.proto() != IPPROTO_TCP {
        return false;
    }
    // SAFETY: as above.
    let (flags, tracked) = unsafe { (*f.tcp_flags, *f.tcp_seq_end) };
    if is_syn(seg) && flags & (ct_tcp::FIN | ct_tcp::RST) != 0 {
        // A new connection over a closed one on the same tuple.
        unsafe {
            *f.tcp_flags = ct_tcp::SYN;
            *f.tcp_seq_end = seq_end(seg);
        }
        return true;
    }
    let plausible = tracked == 0 || near(seg.tcp_seq(), tracked);
    let wire = seg.tcp_flags();
    let mut add = 0;
    if wire & TH_SYN != 0 {
        add |= ct_tcp::SYN;
    }
    if plausible && wire & TH_FIN != 0 {
        add |= ct_tcp::FIN;
    }
    if plausible && wire & TH_RST != 0 {
        add |= ct_tcp::RST;
    }
    let end = seq_end(seg);
    // SAFETY: as above.
    unsafe {
        if add != 0 && flags & add != add {
            *f.tcp_flags = flags | add;
        }
        // Only forward, and only from plausible segments: a forged
        // segment far away must not move the window for the next one.
        if plausible && (tracked == 0 || (end.wrapping_sub(tracked) as i32) > 0) {
            *f.tcp_seq_end = end;
        }
    }
    false
}

/// Clears the TCP state of the entry at `key` (the reply direction of a
/// reopened flow).
#[inline(always)]
pub fn reset_tcp<F: Family>(key: &F::Key) {
    if let Some(entry) = lookup::<F>(key) {
        let f = F::fields(entry.value);
        // SAFETY: a pointer from a map lookup, valid for this program run.
        unsafe {
            *f.tcp_flags = 0;
            *f.tcp_seq_end = 0;
        }
    }
}

/// A packet of a tracked flow, recorded: `touch`, the reopened flow's
/// other direction reset, promotion. Err(Full): the flow could not become
/// assured (counted as `drop_ct_full` by the caller; the packet goes on).
#[inline(always)]
pub fn record<F: Family, S: Segment>(
    key: &F::Key,
    entry: &Entry<F>,
    seg: &S,
) -> Result<(), Refused> {
    if touch::<F, S>(entry.value, seg) {
        // SAFETY: a pointer from a map lookup, valid for this program run.
        let other = F::other_key(key, unsafe { &*entry.value });
        reset_tcp::<F>(&other);
    }
    // Only a new flow's packets can make it assured: assured flows (most
    // packets) skip the out-of-line call.
    if entry.tier == Tier::New {
        return settle::<F>(key, entry, is_syn(seg));
    }
    Ok(())
}

/// The TCP state (`tcp_flags`, `tcp_seq_end`) a new entry for
/// `direction` starts with: the originator's SYN and where its sequence
/// is; nothing known of the other side yet.
#[inline(always)]
pub fn start_tcp<S: Segment>(direction: u8, seg: &S) -> (u8, u32) {
    if direction != ct_dir::ORIGINAL || seg.proto() != IPPROTO_TCP {
        return (0, 0);
    }
    let flags = if seg.tcp_flags() & TH_SYN != 0 {
        ct_tcp::SYN
    } else {
        0
    };
    (flags, seq_end(seg))
}

/// A new flow's entry for `direction`, translating to `t`, written into
/// `room` field by field, the zeroes volatile, and not returned by value:
/// a struct literal's zero fields (the padding, a reply's counters), and
/// the copy out, became calls to a byte-at-a-time `memset`.
#[inline(always)]
pub fn new_entry<'a>(
    room: &'a mut MaybeUninit<CtValue>,
    t: &CtKey,
    kind: u8,
    direction: u8,
    pkt: &Packet,
) -> &'a CtValue {
    let original = direction == ct_dir::ORIGINAL;
    let (tcp_flags, tcp_seq_end) = start_tcp(direction, pkt);
    let v = room.as_mut_ptr();
    let bytes = if original { u64::from(pkt.len) } else { 0 };
    // SAFETY: every field of `room` is written before it is read.
    unsafe {
        (*v).nat_src_ip = t.src_ip;
        (*v).nat_dst_ip = t.dst_ip;
        (*v).nat_src_port = t.src_port;
        (*v).nat_dst_port = t.dst_port;
        (*v).kind = kind;
        (*v).direction = direction;
        (*v).tcp_flags = tcp_flags;
        ptr::write_volatile(addr_of_mut!((*v).pad), 0);
        (*v).tcp_seq_end = tcp_seq_end;
        ptr::write_volatile(addr_of_mut!((*v).pad2), 0);
        (*v).last_seen_ns = bpf_ktime_get_coarse_ns();
        ptr::write_volatile(addr_of_mut!((*v).packets), u64::from(original));
        ptr::write_volatile(addr_of_mut!((*v).bytes), bytes);
        room.assume_init_ref()
    }
}

/// Inserts a new entry; never replaces one, in either table.
#[inline(always)]
pub fn insert_new<F: Family>(key: &F::Key, value: &F::Value) -> Result<(), Refused> {
    if F::get(Tier::Assured, key).is_some() {
        return Err(Refused::Clash);
    }
    insert_lru::<F>(key, value)
}

/// Inserts into the LRU without replacing an entry there.
#[inline(always)]
pub fn insert_lru<F: Family>(key: &F::Key, value: &F::Value) -> Result<(), Refused> {
    match F::insert(Tier::New, key, value) {
        Ok(()) => Ok(()),
        Err(e) if e == -EEXIST => Err(Refused::Clash),
        Err(_) => Err(Refused::Full),
    }
}

/// Inserts a flow's ORIGINAL entry once its REPLY entry (at `reply_key`)
/// is in; on failure (another CPU created the same flow meanwhile, or the
/// table filled up) the REPLY entry is taken back, so no half flow stays
/// behind. Its key is the packet's own tuple, which `lookup` just missed
/// in both tables; only the LRU can have gained it since (another CPU
/// creating the same flow), and the insert there does not overwrite: no
/// second look in the assured table, which only ever gets a flow out of
/// the LRU.
#[inline(always)]
pub fn insert_original_of<F: Family>(
    key: &F::Key,
    value: &F::Value,
    reply_key: &F::Key,
) -> Result<(), Refused> {
    insert_lru::<F>(key, value).inspect_err(|_| F::remove(Tier::New, reply_key))
}

/// The IPv4 ORIGINAL entry of the packet's flow, translating to `t`
/// (see [`insert_original_of`]).
#[inline(always)]
pub fn insert_original(pkt: &Packet, t: &CtKey, kind: u8) -> Result<(), Refused> {
    let mut room = MaybeUninit::uninit();
    let original = new_entry(&mut room, t, kind, ct_dir::ORIGINAL, pkt);
    insert_original_of::<V4>(&pkt.tuple, original, &t.reversed())
}
