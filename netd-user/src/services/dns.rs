//! The embedded DNS responder of user-defined networks (Docker's
//! 127.0.0.11): one UDP socket per network on its gateway address, port 53,
//! in the host namespace. It answers the names (and hostnames) of the
//! containers on that network and forwards every other query to the host's
//! resolvers. Message parsing and building is hickory-proto's.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use anyhow::{Context, Result};
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        RData, Record, RecordType,
        rdata::{A, AAAA},
    },
};
use tokio::{net::UdpSocket, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::engine::{
    events::{Event, Observer},
    model::{DEFAULT_NETWORK, Network},
    store::State,
};

use super::namefiles::host_resolvers;

const TTL: u32 = 600;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// What the responders know, rebuilt on every change of containers.
#[derive(Default)]
struct NameTable {
    /// network name -> (lower-case container name or hostname ->
    /// addresses: IPv4, and IPv6 on a dual-stack network)
    names: HashMap<String, HashMap<String, Vec<IpAddr>>>,
    /// container address -> its own DNS servers (where its queries go);
    /// none for a container on internal networks only, which gets
    /// SERVFAIL for every name outside (as with Docker)
    upstreams: HashMap<IpAddr, Vec<IpAddr>>,
    /// everyone else's upstreams: `--dns-upstream`, else the host's
    default_upstreams: Vec<IpAddr>,
}

/// The responders: an engine observer.
pub struct DnsServers {
    /// `--dns-upstream` (empty: the host's resolvers).
    upstreams: Vec<IpAddr>,
    table: Arc<RwLock<NameTable>>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Drop for DnsServers {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.values() {
                task.abort();
            }
        }
    }
}

impl Observer for DnsServers {
    fn notify(&self, event: &Event, state: &State) {
        match event {
            Event::Resync => {
                for net in state.networks.values() {
                    self.start(net);
                }
                self.rebuild(state);
            }
            Event::NetworkCreated(net) => self.start(net),
            Event::NetworkRemoved(net) => self.stop(&net.name),
            Event::ContainerAdded(_)
            | Event::ContainerRemoved(_)
            | Event::EndpointAdded { .. }
            | Event::EndpointRemoved { .. } => self.rebuild(state),
            Event::PortsPublished(_) | Event::PortsUnpublished(_) => {}
        }
    }
}

impl DnsServers {
    pub fn new(upstreams: Vec<IpAddr>) -> Self {
        Self {
            upstreams,
            table: Arc::default(),
            tasks: Mutex::default(),
        }
    }

    /// Starts the responder of a user-defined network (the default bridge,
    /// like Docker's, has none). A responder that cannot start is logged:
    /// the network works, its names do not resolve.
    fn start(&self, net: &Network) {
        if let Err(e) = self.try_start(net) {
            warn!(network = %net.name, "DNS responder not started: {e:#}");
        }
    }

    fn try_start(&self, net: &Network) -> Result<()> {
        let mut tasks = self
            .tasks
            .lock()
            .map_err(|_| anyhow::anyhow!("DNS task table poisoned"))?;
        if net.name == DEFAULT_NETWORK || tasks.contains_key(&net.name) {
            return Ok(());
        }
        let addr = SocketAddr::new(net.gateway, 53);
        let std_sock = std::net::UdpSocket::bind(addr).with_context(|| {
            format!(
                "binding the DNS responder of network {} on {addr}",
                net.name
            )
        })?;
        std_sock
            .set_nonblocking(true)
            .context("setting the DNS socket non-blocking")?;
        let sock = UdpSocket::from_std(std_sock).context("registering the DNS socket")?;
        let task = tokio::spawn(serve(sock, net.name.clone(), self.table.clone()));
        tasks.insert(net.name.clone(), task);
        info!(network = %net.name, %addr, "DNS responder started");
        Ok(())
    }

    fn stop(&self, network: &str) {
        if let Ok(mut tasks) = self.tasks.lock()
            && let Some(task) = tasks.remove(network)
        {
            task.abort();
        }
    }

    /// Rebuilds the name table from the containers.
    fn rebuild(&self, state: &State) {
        let mut table = NameTable {
            default_upstreams: match &self.upstreams {
                given if !given.is_empty() => given.clone(),
                _ => host_resolvers(),
            },
            ..NameTable::default()
        };
        let internal = |name: &str| state.networks.get(name).is_some_and(|n| n.internal);
        // A DNS server that is one of netd's own responders would forward
        // to itself: such a server counts as none.
        let responders: Vec<IpAddr> = state.networks.values().map(|n| n.gateway).collect();
        for c in state.containers.values() {
            let internal_only = c.endpoints.iter().all(|ep| internal(&ep.network));
            let own: Vec<IpAddr> = c
                .names
                .dns
                .iter()
                .filter(|ip| !responders.contains(ip))
                .copied()
                .collect();
            for ep in &c.endpoints {
                let names = table.names.entry(ep.network.clone()).or_default();
                let addrs: Vec<IpAddr> = std::iter::once(ep.ip).chain(ep.ip6).collect();
                names.insert(c.name.to_lowercase(), addrs.clone());
                names.insert(c.names.hostname.to_lowercase(), addrs.clone());
                for ip in addrs {
                    if internal_only {
                        table.upstreams.insert(ip, Vec::new());
                    } else if !own.is_empty() {
                        table.upstreams.insert(ip, own.clone());
                    }
                }
            }
        }
        match self.table.write() {
            Ok(mut guard) => *guard = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

async fn serve(sock: UdpSocket, network: String, table: Arc<RwLock<NameTable>>) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                warn!(network, "DNS receive failed: {e}");
                continue;
            }
        };
        // One task per query: a slow upstream must not hold up the rest.
        let (query, sock, network, table) = (
            buf[..len].to_vec(),
            sock.clone(),
            network.clone(),
            table.clone(),
        );
        tokio::spawn(async move {
            let reply = respond(&query, peer, &network, &table).await;
            if let Some(reply) = reply
                && let Err(e) = sock.send_to(&reply, peer).await
            {
                debug!(network, %peer, "DNS reply failed: {e}");
            }
        });
    }
}

/// The reply to one query: a local answer, a forwarded one, or SERVFAIL.
async fn respond(
    query: &[u8],
    peer: SocketAddr,
    network: &str,
    table: &RwLock<NameTable>,
) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if let Some(reply) = local_answer(&request, network, table) {
        return reply.to_vec().ok();
    }
    let upstreams = upstreams_for(table, peer);
    match forward(query, &upstreams).await {
        Some(reply) => Some(reply),
        None => error_reply(&request, ResponseCode::ServFail).to_vec().ok(),
    }
}

/// The querying container's `--dns` servers, else the default upstreams;
/// none for a container that may not reach outside.
fn upstreams_for(table: &RwLock<NameTable>, peer: SocketAddr) -> Vec<IpAddr> {
    let Ok(guard) = table.read() else {
        return Vec::new();
    };
    let own = guard.upstreams.get(&peer.ip()).cloned();
    own.unwrap_or_else(|| guard.default_upstreams.clone())
}

fn lookup(table: &RwLock<NameTable>, network: &str, name: &str) -> Option<Vec<IpAddr>> {
    let guard = table.read().ok()?;
    guard.names.get(network)?.get(name).cloned()
}

/// Answers A and AAAA queries for names of containers on the network (an
/// AAAA answer only on a dual-stack network; elsewhere it is empty, not
/// forwarded); None when the name is not one of them.
fn local_answer(request: &Message, network: &str, table: &RwLock<NameTable>) -> Option<Message> {
    let query = request.queries().first()?;
    let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
    let addrs = lookup(table, network, &name)?;
    let mut reply = error_reply(request, ResponseCode::NoError);
    reply.set_authoritative(true);
    for ip in addrs {
        let data = match (query.query_type(), ip) {
            (RecordType::A, IpAddr::V4(ip)) => RData::A(A(ip)),
            (RecordType::AAAA, IpAddr::V6(ip)) => RData::AAAA(AAAA(ip)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(query.name().clone(), TTL, data));
    }
    Some(reply)
}

fn error_reply(request: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    for q in request.queries() {
        reply.add_query(q.clone());
    }
    reply
}

/// Relays the query to the upstreams in turn; the first answer wins.
async fn forward(query: &[u8], upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for &server in upstreams {
        let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .await
            .ok()?;
        if sock.send_to(query, (server, 53)).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(len)) = tokio::time::timeout(FORWARD_TIMEOUT, sock.recv(&mut buf)).await {
            buf.truncate(len);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{op::Query, rr::Name};

    fn table() -> RwLock<NameTable> {
        let mut names = HashMap::new();
        names.insert(
            "web".to_string(),
            vec![IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2))],
        );
        names.insert(
            "dual".to_string(),
            vec![
                IpAddr::V4(Ipv4Addr::new(172, 18, 0, 3)),
                "fd00:1::3".parse().unwrap(),
            ],
        );
        RwLock::new(NameTable {
            names: HashMap::from([("app".to_string(), names)]),
            ..NameTable::default()
        })
    }

    fn query(name: &str, ty: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m
    }

    #[test]
    fn answers_known_names_case_insensitively() {
        let reply = local_answer(&query("WEB.", RecordType::A), "app", &table()).unwrap();
        assert_eq!(reply.id(), 7);
        assert_eq!(reply.answers().len(), 1);
        assert_eq!(
            reply.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(172, 18, 0, 2)))
        );
    }

    #[test]
    fn other_networks_and_unknown_names_are_not_answered() {
        assert!(local_answer(&query("web.", RecordType::A), "other", &table()).is_none());
        assert!(local_answer(&query("db.", RecordType::A), "app", &table()).is_none());
        let aaaa = local_answer(&query("web.", RecordType::AAAA), "app", &table()).unwrap();
        assert!(aaaa.answers().is_empty());
    }

    #[test]
    fn dual_stack_names_answer_a_and_aaaa() {
        let a = local_answer(&query("dual.", RecordType::A), "app", &table()).unwrap();
        assert_eq!(
            a.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(172, 18, 0, 3)))
        );
        let aaaa = local_answer(&query("dual.", RecordType::AAAA), "app", &table()).unwrap();
        assert_eq!(aaaa.answers().len(), 1);
        assert_eq!(
            aaaa.answers()[0].data(),
            &RData::AAAA(AAAA("fd00:1::3".parse().unwrap()))
        );
    }
}
