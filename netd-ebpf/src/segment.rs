//! What connection tracking reads of a packet ([`Segment`]), and a plain
//! [`Seg`] holding it (the IPv6 path fills one in). A leaf: `maps` keeps
//! a `Seg` in the IPv6 path's per-CPU room, and `conntrack` reads it.

/// A packet as conntrack sees it: protocol, length and TCP header.
pub trait Segment {
    fn proto(&self) -> u8;
    fn len(&self) -> u32;
    /// TCP flags byte (0 for other protocols).
    fn tcp_flags(&self) -> u8;
    /// TCP sequence number (host order).
    fn tcp_seq(&self) -> u32;
    /// TCP payload length.
    fn tcp_payload(&self) -> u32;
}

/// A segment as plain fields.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Seg {
    pub proto: u8,
    pub tcp_flags: u8,
    /// Where the transport header is in the frame (the IPv6 path's:
    /// behind extension headers it moves; 0 for a later fragment, which
    /// has none).
    pub l4: u16,
    pub len: u32,
    pub tcp_seq: u32,
    pub tcp_payload: u32,
}

impl Segment for Seg {
    #[inline(always)]
    fn proto(&self) -> u8 {
        self.proto
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
