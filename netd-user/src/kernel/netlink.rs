//! rtnetlink helpers: the few link, address and route operations netd needs,
//! each with the context a user needs when it fails.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
    sync::Arc,
};

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use nix::libc::{EEXIST, ENODEV};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        address::AddressHeaderFlags,
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage},
        route::{RouteHeader, RouteMessage},
    },
};

use super::netns;

/// A netlink route socket bound to one network namespace. The kernel runs
/// one dump at a time per socket (a second gets EBUSY), and the engine's
/// reads and upkeep run beside its mutations: dumps take turns.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    dumps: Arc<tokio::sync::Mutex<()>>,
}

fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

impl Netlink {
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Held for the length of a dump.
    pub async fn dump_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.dumps.lock().await
    }

    /// A socket in the daemon's own namespace.
    pub fn current() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            dumps: Arc::default(),
        })
    }

    /// A socket in the namespace pinned at `path`. The socket is created on a
    /// throwaway thread that joined the namespace; it stays bound to it.
    pub fn in_netns(path: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        netns::run_in(path, move || {
            let _guard = runtime.enter();
            Self::current()
        })
    }

    /// ifindex of the link called `name`, if there is one.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_by_name(name).await?.map(|l| l.header.index))
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if is_errno(&e, ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up link {name}")),
        }
    }

    /// The link with ifindex `index`.
    pub async fn link_by_index(&self, index: u32) -> Result<LinkMessage> {
        let mut links = self.handle.link().get().match_index(index).execute();
        links
            .try_next()
            .await
            .with_context(|| format!("looking up link {index}"))?
            .ok_or_else(|| anyhow!("link {index} not found"))
    }

    /// Names of the links enslaved to any of `bridges`.
    pub async fn ports_of(&self, bridges: &[u32]) -> Result<Vec<String>> {
        let _turn = self.dump_turn().await;
        let mut links = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(link) = links.try_next().await.context("listing links")? {
            let master = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(i) => Some(*i),
                _ => None,
            });
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let (Some(master), Some(name)) = (master, name)
                && bridges.contains(&master)
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// MAC address of link `index`.
    pub async fn link_mac(&self, index: u32) -> Result<[u8; 6]> {
        let link = self.link_by_index(index).await?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(mac) if mac.len() == 6 => {
                    let mut out = [0u8; 6];
                    out.copy_from_slice(mac);
                    Some(out)
                }
                _ => None,
            })
            .ok_or_else(|| anyhow!("link {index} has no MAC address"))
    }

    /// Whether link `name` is a bridge: None if there is no such link.
    pub async fn is_bridge(&self, name: &str) -> Result<Option<bool>> {
        self.is_kind(name, InfoKind::Bridge).await
    }

    /// Whether link `name` is of `kind` (bridge, veth): None if there is no
    /// such link.
    pub async fn is_kind(&self, name: &str, kind: InfoKind) -> Result<Option<bool>> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(None);
        };
        let matches = link.attributes.iter().any(|a| match a {
            LinkAttribute::LinkInfo(infos) => {
                infos.iter().any(|i| *i == LinkInfo::Kind(kind.clone()))
            }
            _ => false,
        });
        Ok(Some(matches))
    }

    /// The name of link `index`, if it exists.
    pub async fn link_name_of(&self, index: u32) -> Result<Option<String>> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = match links.try_next().await {
            Ok(link) => link,
            Err(e) if is_errno(&e, ENODEV) => None,
            Err(e) => return Err(e).with_context(|| format!("looking up link {index}")),
        };
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
        }))
    }

    /// Names of every link in this namespace.
    pub async fn link_names(&self) -> Result<Vec<String>> {
        let _turn = self.dump_turn().await;
        let mut links = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(link) = links.try_next().await.context("listing links")? {
            out.extend(link.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Creates bridge `name` if missing, brings it up, returns its ifindex.
    /// The MAC is fixed: a bridge otherwise takes the lowest MAC of its
    /// ports, and changes it as containers come and go. An existing link
    /// of that name that is not a bridge is never taken over.
    pub async fn ensure_bridge(&self, name: &str, mac: [u8; 6]) -> Result<u32> {
        if self.is_bridge(name).await? == Some(false) {
            anyhow::bail!(
                "interface {name} exists and is not a bridge: netd never takes over another interface; use another bridge name"
            );
        }
        if self.link_index(name).await?.is_none() {
            let msg = LinkBridge::new(name).address(mac.to_vec()).up().build();
            self.handle
                .link()
                .add(msg)
                .execute()
                .await
                .with_context(|| format!("creating bridge {name}"))?;
        }
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| anyhow!("bridge {name} vanished right after creation"))?;
        self.set_up(index).await?;
        Ok(index)
    }

    /// Adds `ip/prefix` to link `index`; an address already present is fine.
    /// An IPv6 address skips duplicate address detection (netd hands
    /// out its addresses; DAD would hold it tentative, unusable, for a
    /// second or more).
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding {ip}/{prefix} to link {index}")),
        }
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("setting link {index} up"))
    }

    /// Creates a veth pair: `host_name` here, attached to `bridge` and up;
    /// its peer `peer_name` (with `peer_mac`) directly inside the namespace
    /// at `netns_path` (so no rename and no name clash on the host), or
    /// here too when there is none (for a runtime to move).
    pub async fn add_veth(
        &self,
        host_name: &str,
        bridge: u32,
        peer_name: &str,
        peer_mac: [u8; 6],
        netns_path: Option<&Path>,
    ) -> Result<u32> {
        let ns = netns_path.map(netns::open).transpose()?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_string())
            .address(peer_mac.to_vec());
        if let Some(ns) = &ns {
            peer = peer.setns_by_fd(ns.as_raw_fd());
        }
        let peer = peer.build();
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host_name.to_string())
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("creating veth pair {host_name}/{peer_name}"))?;
        self.link_index(host_name)
            .await?
            .ok_or_else(|| anyhow!("veth {host_name} vanished right after creation"))
    }

    /// Removes `ip` from link `name`; an address or link already gone is
    /// fine.
    pub async fn delete_address(&self, name: &str, ip: IpAddr) -> Result<()> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        let _turn = self.dump_turn().await;
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        while let Some(msg) = addrs
            .try_next()
            .await
            .with_context(|| format!("listing the addresses of {name}"))?
        {
            match self.handle.address().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, nix::libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(e).with_context(|| format!("removing {ip} from {name}")),
            }
        }
        Ok(())
    }

    /// Deletes link `name`; a link that is already gone is fine.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, ENODEV) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting link {name}")),
        }
    }

    /// Removes every main-table default route the dump `filter` lists
    /// (one address family's).
    async fn delete_default_routes(&self, filter: RouteMessage, family: &str) -> Result<()> {
        let _turn = self.dump_turn().await;
        let mut routes = self.handle.route().get(filter).execute();
        let mut defaults = Vec::new();
        while let Some(route) = routes
            .try_next()
            .await
            .with_context(|| format!("listing {family} routes"))?
        {
            if route.header.destination_prefix_length == 0
                && route.header.table == RouteHeader::RT_TABLE_MAIN
            {
                defaults.push(route);
            }
        }
        for route in defaults {
            match self.handle.route().del(route).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, nix::libc::ESRCH) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing the {family} default route"));
                }
            }
        }
        Ok(())
    }

    /// Makes the IPv4 default route go via `gateway`, or removes it (None).
    pub async fn replace_default_route(&self, gateway: Option<Ipv4Addr>) -> Result<()> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        self.delete_default_routes(filter, "IPv4").await?;
        match gateway {
            Some(gateway) => self.add_default_route(gateway).await,
            None => Ok(()),
        }
    }

    /// Makes the IPv6 default route go via `gateway`, or removes it (None).
    pub async fn replace_default_route6(&self, gateway: Option<Ipv6Addr>) -> Result<()> {
        let filter = RouteMessageBuilder::<Ipv6Addr>::new().build();
        self.delete_default_routes(filter, "IPv6").await?;
        match gateway {
            Some(gateway) => self.add_default_route6(gateway).await,
            None => Ok(()),
        }
    }

    /// Adds the IPv6 default route via `gateway`.
    pub async fn add_default_route6(&self, gateway: Ipv6Addr) -> Result<()> {
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .build();
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding IPv6 default route via {gateway}")),
        }
    }

    /// Adds the default route via `gateway`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding default route via {gateway}")),
        }
    }
}
