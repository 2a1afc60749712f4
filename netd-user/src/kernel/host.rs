//! Facts about, and the few settings netd makes on, the host (the network
//! namespace the daemon runs in): uplinks, addresses, the netns cookie,
//! the cgroup v2 root, and the one sysctl netd needs.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::PathBuf,
};

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::{
        AddressFamily as NlFamily, address::AddressAttribute, link::LinkAttribute,
        route::RouteAttribute,
    },
};

use super::netlink::Netlink;

/// `SO_NETNS_COOKIE` (Linux 5.14+), not yet exported by nix.
const SO_NETNS_COOKIE: i32 = 71;

/// The cookie the kernel gives this network namespace; the socket hooks
/// compare it with `bpf_get_netns_cookie()` to act only here.
pub fn netns_cookie() -> Result<u64> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("creating a socket to read the netns cookie")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as nix::libc::socklen_t;
    // SAFETY: valid fd, buffer and length for a u64 option.
    let rc = unsafe {
        nix::libc::getsockopt(
            sock.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_NETNS_COOKIE)");
    }
    Ok(cookie)
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_root() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, path, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(path))
        })
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| {
            anyhow!(
                "no cgroup2 filesystem is mounted: host-local access to published ports needs one"
            )
        })
}

/// `ip netns exec` runs a command in a private mount namespace with a
/// fresh `/sys`: whatever the daemon mounted or pinned there (container
/// namespaces under /run/netns, bpffs pins, the cgroup its socket hooks
/// attach to) would be invisible to every other process. So a daemon whose
/// mount namespace is not its parent's (the shell or supervisor that
/// started `ip netns exec`, which execs the daemon) joins the parent's
/// before anything else; its network namespace stays as it is. PID 1's
/// namespace is not used as the reference: it may be unreadable (as in
/// sandboxes), and a supervised daemon's parent is PID 1 anyway. Must run
/// while the process is single-threaded (setns of a mount namespace
/// refuses otherwise); paths must be absolute by then, since setns moves
/// the root and cwd. Returns whether it switched.
pub fn join_host_mount_namespace() -> Result<bool> {
    let ns_id = |path: &str| fs::read_link(path).map(|id| id.to_string_lossy().into_owned());
    let ours = ns_id("/proc/self/ns/mnt").context("reading /proc/self/ns/mnt")?;
    let parent = format!("/proc/{}/ns/mnt", nix::unistd::getppid());
    let Ok(theirs) = ns_id(&parent) else {
        return Ok(false); // the parent is gone or hidden: nothing to compare
    };
    if ours == theirs {
        return Ok(false);
    }
    let joined = fs::File::open(&parent)
        .map_err(anyhow::Error::from)
        .and_then(|file| {
            Ok(nix::sched::setns(
                file,
                nix::sched::CloneFlags::CLONE_NEWNS,
            )?)
        });
    joined.context(
        "the daemon runs in a private mount namespace (started by `ip netns exec`?) and cannot join its parent's: start it with `nsenter --net=/run/netns/NAME netd daemon` instead",
    )?;
    Ok(true)
}

/// IPv4 forwarding: the eBPF FIB lookups of forwarded packets honour it,
/// exactly like the kernel's own forwarding does.
pub fn enable_forwarding() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1").with_context(|| format!("setting {path} = 1"))
}

/// IPv6 forwarding on one interface (by index), for the eBPF FIB lookups
/// of packets entering there (`bpf_fib_lookup` checks the ingress
/// device's setting). `all.forwarding` stays off, so the stack itself
/// routes no IPv6.
pub fn enable_ipv6_forwarding_on(ifindex: u32) -> Result<()> {
    let name = nix::net::if_::if_indextoname(ifindex)
        .with_context(|| format!("the name of interface {ifindex}"))?;
    let name = name.to_string_lossy();
    let path = format!("/proc/sys/net/ipv6/conf/{name}/forwarding");
    fs::write(&path, "1").with_context(|| format!("setting {path} = 1"))
}

/// A stream that yields whenever an IPv4 address of this namespace is
/// added or removed (netlink's RTMGRP_IPV4_IFADDR group), so the datapath's
/// host-address list follows changes as they happen, not on a timer.
pub fn address_changes() -> Result<futures::channel::mpsc::UnboundedReceiver<()>> {
    use rtnetlink::sys::{AsyncSocket, SocketAddr};
    let (mut conn, _handle, messages) =
        rtnetlink::new_connection().context("opening a netlink socket for address events")?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(
            0,
            rtnetlink::constants::RTMGRP_IPV4_IFADDR,
        ))
        .context("subscribing to address events")?;
    tokio::spawn(conn);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut messages = messages;
        while messages.next().await.is_some() {
            if tx.unbounded_send(()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

impl Netlink {
    /// Every address of the host: IPv4 but loopback, IPv6 but loopback
    /// and link-local.
    pub async fn host_addrs(&self) -> Result<Vec<IpAddr>> {
        let _turn = self.dump_turn().await;
        let mut addrs = self.handle().address().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = addrs.try_next().await.context("listing addresses")? {
            let family = msg.header.family;
            for attr in msg.attributes {
                match attr {
                    AddressAttribute::Local(IpAddr::V4(ip))
                        if family == NlFamily::Inet && !ip.is_loopback() =>
                    {
                        out.push(IpAddr::V4(ip));
                    }
                    AddressAttribute::Address(IpAddr::V6(ip))
                        if family == NlFamily::Inet6
                            && !ip.is_loopback()
                            && !ip.is_unicast_link_local() =>
                    {
                        out.push(IpAddr::V6(ip));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Name of the interface carrying the IPv4 default route.
    pub async fn default_route_ifname(&self) -> Result<String> {
        let _turn = self.dump_turn().await;
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle().route().get(filter).execute();
        let mut oif = None;
        while let Some(route) = routes.try_next().await.context("listing routes")? {
            if route.header.destination_prefix_length != 0 {
                continue;
            }
            oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if oif.is_some() {
                break;
            }
        }
        let Some(index) = oif else {
            bail!("no IPv4 default route: pass the uplink with --uplink IFACE");
        };
        self.link_name(index).await
    }

    async fn link_name(&self, index: u32) -> Result<String> {
        let link = self.link_by_index(index).await?;
        link.attributes
            .into_iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
            .ok_or_else(|| anyhow!("link {index} has no name"))
    }
}
