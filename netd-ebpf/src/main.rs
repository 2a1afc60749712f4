//! netd's eBPF datapath. Built for `bpfel-unknown-none` by netd-user's
//! build.rs. See docs/ARCHITECTURE.md ("netd-ebpf modules") for the map of
//! the modules and the packet paths.
//!
//! `attach` holds the entry points, one module per attach point (container
//! veth, uplink, socket hooks); everything they do is in the mechanism
//! modules below, over the packet context of `ctx`.
#![no_std]
#![no_main]

/// Checks at compile time that the entry point `$f` carries the name
/// netd-common lists for it (`netd_common::names::programs`), which is the
/// name the daemon loads and attaches it by.
macro_rules! named_as {
    ($f:ident, $name:path) => {
        const _: () = assert!(
            netd_common::names::same(stringify!($f), $name),
            concat!(
                stringify!($f),
                " is not the name netd_common::names::programs gives it"
            ),
        );
    };
}

mod attach;

mod antispoof;
mod conntrack;
mod ctx;
mod exposure;
mod frag;
mod icmp;
mod icmp6;
mod ipv6;
mod maps;
mod nat;
mod nat6;
mod packet;
mod policy;
mod published;
mod route;
mod segment;
mod sockaddr;
mod stats;
mod tracked;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
