//! The packet context the mechanisms work on, whatever the hook: a tc
//! program's skb today, an XDP frame later. Parsing, rewriting,
//! anti-spoofing, exposure, ICMP error translation and the FIB lookup are
//! written against [`PacketCtx`]; only delivery (`bpf_redirect_peer`,
//! `bpf_redirect_neigh`), the ICMP answer built in place, and the
//! verdicts are tc's own. Every method is `#[inline(always)]` and
//! monomorphised: the trait costs nothing over calling `TcContext`.
//!
//! An XDP implementation would map `pull` to a bounds check (an XDP frame's
//! headers are linear), `load`/`store` to `bpf_xdp_load_bytes`/
//! `bpf_xdp_store_bytes`, the checksum updates to `bpf_csum_diff`, and
//! `ifindex` to `ingress_ifindex`.

use core::ffi::c_void;

use aya_ebpf::programs::TcContext;

pub trait PacketCtx {
    /// Start and end of the directly accessible (linear) bytes.
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Length of the whole packet, linear or not.
    fn len(&self) -> u32;
    /// Makes the first `len` bytes directly accessible. Invalidates packet
    /// pointers.
    fn pull(&mut self, len: u32) -> Result<(), ()>;
    /// The interface the packet arrived on.
    fn ifindex(&self) -> u32;
    /// A `T` at `off`, wherever it lies (linear or not). `T`'s size is
    /// the constant length the helper needs.
    fn load<T>(&self, off: usize) -> Result<T, ()>;
    /// Writes `v` at `off` (`flags`: the store helper's, e.g.
    /// `BPF_F_RECOMPUTE_CSUM`).
    fn store<T>(&mut self, off: usize, v: &T, flags: u64) -> Result<(), ()>;
    /// Incremental update of the IPv4 header checksum at `off` for a
    /// `size`-byte field going from `from` to `to`.
    fn l3_csum_replace(&mut self, off: usize, from: u64, to: u64, size: u64) -> Result<(), ()>;
    /// Incremental update of an L4 checksum at `off` (`flags`: size in the
    /// low bits, `BPF_F_PSEUDO_HDR`, `BPF_F_MARK_MANGLED_0`).
    fn l4_csum_replace(&mut self, off: usize, from: u64, to: u64, flags: u64) -> Result<(), ()>;
    /// The context pointer, for helpers that take any packet context
    /// (`bpf_fib_lookup`).
    fn as_ptr(&self) -> *mut c_void;
}

impl PacketCtx for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }

    #[inline(always)]
    fn pull(&mut self, len: u32) -> Result<(), ()> {
        self.pull_data(len).map_err(|_| ())
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the skb pointer the kernel handed us.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn load<T>(&self, off: usize) -> Result<T, ()> {
        TcContext::load(self, off).map_err(|_| ())
    }

    #[inline(always)]
    fn store<T>(&mut self, off: usize, v: &T, flags: u64) -> Result<(), ()> {
        TcContext::store(self, off, v, flags).map_err(|_| ())
    }

    #[inline(always)]
    fn l3_csum_replace(&mut self, off: usize, from: u64, to: u64, size: u64) -> Result<(), ()> {
        TcContext::l3_csum_replace(self, off, from, to, size).map_err(|_| ())
    }

    #[inline(always)]
    fn l4_csum_replace(&mut self, off: usize, from: u64, to: u64, flags: u64) -> Result<(), ()> {
        TcContext::l4_csum_replace(self, off, from, to, flags).map_err(|_| ())
    }

    #[inline(always)]
    fn as_ptr(&self) -> *mut c_void {
        self.skb.skb.cast()
    }
}
