//! The cgroup socket hooks: host-local access to published ports. A
//! process in the host's network namespace connecting to 127.0.0.1:PORT or
//! HOSTIP:PORT gets its socket pointed at the container directly (no
//! userland proxy, no per-packet NAT). The hooks attach to the cgroup v2
//! root, so they check the netns cookie first and leave every other
//! namespace alone (`sockaddr`).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use netd_common::names::programs;

use crate::sockaddr::{
    redirect_to_container, redirect_to_container6, show_original, show_original6,
};

/// Allow the syscall (the hooks never refuse one).
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn netd_connect4(ctx: SockAddrContext) -> i32 {
    redirect_to_container(&ctx);
    ALLOW
}
named_as!(netd_connect4, programs::CONNECT4);

#[cgroup_sock_addr(sendmsg4)]
pub fn netd_sendmsg4(ctx: SockAddrContext) -> i32 {
    redirect_to_container(&ctx);
    ALLOW
}
named_as!(netd_sendmsg4, programs::SENDMSG4);

/// getpeername() of a redirected socket: the address the application
/// connected to, not the container's.
#[cgroup_sock_addr(getpeername4)]
pub fn netd_getpeername4(ctx: SockAddrContext) -> i32 {
    show_original(&ctx);
    ALLOW
}
named_as!(netd_getpeername4, programs::GETPEERNAME4);

/// recvmsg() on a redirected UDP socket: datagrams from the container look
/// like they come from the address the application sent to.
#[cgroup_sock_addr(recvmsg4)]
pub fn netd_recvmsg4(ctx: SockAddrContext) -> i32 {
    show_original(&ctx);
    ALLOW
}
named_as!(netd_recvmsg4, programs::RECVMSG4);

#[cgroup_sock_addr(connect6)]
pub fn netd_connect6(ctx: SockAddrContext) -> i32 {
    redirect_to_container6(&ctx);
    ALLOW
}
named_as!(netd_connect6, programs::CONNECT6);

#[cgroup_sock_addr(sendmsg6)]
pub fn netd_sendmsg6(ctx: SockAddrContext) -> i32 {
    redirect_to_container6(&ctx);
    ALLOW
}
named_as!(netd_sendmsg6, programs::SENDMSG6);

#[cgroup_sock_addr(getpeername6)]
pub fn netd_getpeername6(ctx: SockAddrContext) -> i32 {
    show_original6(&ctx);
    ALLOW
}
named_as!(netd_getpeername6, programs::GETPEERNAME6);

#[cgroup_sock_addr(recvmsg6)]
pub fn netd_recvmsg6(ctx: SockAddrContext) -> i32 {
    show_original6(&ctx);
    ALLOW
}
named_as!(netd_recvmsg6, programs::RECVMSG6);
