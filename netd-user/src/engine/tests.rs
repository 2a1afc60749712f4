//! The engine's logic against in-memory fakes of the store and the
//! kernel: IPAM, conflicts, rollback when a step fails, reconcile
//! decisions, events. No root needed.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use super::{
    Engine, EngineConfig,
    address_pool::AddressPool,
    error::{ErrorKind, Remedy},
    events::Event,
    fake::FakeKernel,
    kernel::LinkKind,
    model::{ContainerId, Phase, Placement, PortRange, Proto},
    requests::{
        ContainerAdd, ContainerRef, EndpointRequest, NetworkCreate, Publish, SandboxRequest,
    },
    store::{Change, Store, memory::MemoryStore},
};

fn config() -> EngineConfig {
    EngineConfig {
        netns_dir: PathBuf::from("/fake/netns"),
        default_bridge: "netd0".into(),
        default_subnet: "172.17.0.0/16".parse().unwrap(),
        default_subnet6: None,
        address_pools: AddressPool::defaults(),
    }
}

/// A store shared between the engine and the test.
#[derive(Clone, Default)]
struct SharedStore(Arc<MemoryStore>);

impl Store for SharedStore {
    fn load(&self) -> super::error::Result<super::store::State> {
        self.0.load()
    }
    fn commit(&self, changes: &[Change]) -> super::error::Result<()> {
        self.0.commit(changes)
    }
}

async fn engine_with(kernel: &FakeKernel, store: &SharedStore) -> Engine {
    Engine::start(config(), Box::new(store.clone()), kernel.kernel(), vec![])
        .await
        .unwrap()
}

fn add(name: &str) -> ContainerAdd {
    ContainerAdd {
        name: name.into(),
        id: None,
        sandbox: SandboxRequest::Create,
        endpoint: Some(EndpointRequest {
            network: "bridge".into(),
            id: None,
            ifname: None,
            ip: None,
            ip6: None,
            peer_on_host: false,
        }),
        publish: vec![],
        force_publish: false,
        hostname: None,
        dns: vec![],
        extra_hosts: vec![],
    }
}

fn publish(port: u16) -> Publish {
    Publish {
        host_ip: "0.0.0.0".parse().unwrap(),
        host_ports: PortRange::single(port),
        container_ports: PortRange::single(80),
        proto: Proto::Tcp,
        ipv4_only: false,
    }
}

fn by_name(name: &str) -> ContainerRef {
    ContainerRef::Name(name.into())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn start_makes_the_default_network_and_its_bridge() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let net = engine.network("bridge").unwrap();
    assert_eq!(net.gateway, ip("172.17.0.1"));
    assert!(kernel.with(|w| w.links.get("netd0").map(|l| l.1)) == Some(LinkKind::Bridge));
    assert!(!net.adopted_bridge);
}

#[tokio::test]
async fn addresses_are_handed_out_in_order_and_reused() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let a = engine.add_container(add("a")).await.unwrap();
    let b = engine.add_container(add("b")).await.unwrap();
    assert_eq!(a.endpoints[0].ip, ip("172.17.0.2"));
    assert_eq!(b.endpoints[0].ip, ip("172.17.0.3"));
    assert_eq!(a.endpoints[0].ifname, "eth0");
    engine.remove_container(&by_name("a")).await.unwrap();
    let c = engine.add_container(add("c")).await.unwrap();
    assert_eq!(c.endpoints[0].ip, ip("172.17.0.2"));
    assert!(kernel.with(|w| w.endpoints.contains_key(&ip("172.17.0.3"))));
}

#[tokio::test]
async fn a_failing_step_leaves_nothing_behind() {
    for step in [
        "netns_create",
        "add_veth",
        "configure_interface",
        "attach_veth",
        "insert_ports",
    ] {
        let (kernel, store) = (FakeKernel::default(), SharedStore::default());
        let engine = engine_with(&kernel, &store).await;
        let links_before = kernel.with(|w| w.links.len());
        kernel.with(|w| w.fail = Some(step));
        let mut req = add("a");
        req.publish = vec![publish(8080)];
        let err = engine.add_container(req).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Kernel, "{step}: {err}");
        kernel.with(|w| {
            assert!(w.namespaces.is_empty(), "{step}: namespace left");
            assert!(w.endpoints.is_empty(), "{step}: datapath entry left");
            assert!(w.attached.is_empty(), "{step}: program left");
            assert!(w.ports.is_empty(), "{step}: published port left");
            assert_eq!(w.links.len(), links_before, "{step}: link left");
        });
        assert!(engine.containers().is_empty(), "{step}: record left");
        assert!(store.load().unwrap().containers.is_empty());
        assert!(engine.portmaps().is_empty());
    }
}

#[tokio::test]
async fn a_failing_commit_leaves_nothing_behind() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    store.0.fail_next_commit();
    let err = engine.add_container(add("a")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Store);
    assert!(engine.containers().is_empty());
    assert!(kernel.with(|w| w.namespaces.is_empty() && w.endpoints.is_empty()));
}

#[tokio::test]
async fn conflicts_are_refused_with_their_kind() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let mut first = add("a");
    first.publish = vec![publish(8080)];
    engine.add_container(first).await.unwrap();
    let mut clash = add("b");
    clash.publish = vec![publish(8080)];
    let err = engine.add_container(clash).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert!(engine.container("b").is_err());
    let err = engine.add_container(add("a")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyExists);
    let mut fixed = add("c");
    fixed.endpoint.as_mut().unwrap().ip = Some(ip("172.17.0.2"));
    let err = engine.add_container(fixed).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    let err = engine.container("nope").unwrap_err();
    assert_eq!(
        (err.kind, err.remedy),
        (ErrorKind::NotFound, Some(Remedy::ListContainers))
    );
}

#[tokio::test]
async fn host_listeners_need_force() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    kernel.with(|w| {
        w.listening.push(super::model::HostSocket {
            addr: ip("0.0.0.0"),
            port: 2222,
            proto: Proto::Tcp,
        })
    });
    let engine = engine_with(&kernel, &store).await;
    let mut req = add("a");
    req.publish = vec![publish(2222)];
    let err = engine.add_container(req.clone()).await.unwrap_err();
    assert_eq!(err.remedy, Some(Remedy::ForcePublish), "{err}");
    assert!(engine.containers().is_empty());
    req.force_publish = true;
    engine.add_container(req).await.unwrap();
    assert_eq!(engine.portmaps().len(), 1);
}

#[tokio::test]
async fn networks_in_use_stay_and_adopted_bridges_are_never_deleted() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let net = engine
        .create_network(NetworkCreate {
            name: "app".into(),
            ..NetworkCreate::default()
        })
        .await
        .unwrap();
    let mut req = add("a");
    req.endpoint.as_mut().unwrap().network = "app".into();
    let a = engine.add_container(req).await.unwrap();
    assert_eq!(a.endpoints[0].ip, ip("172.18.0.2"));
    let err = engine.remove_network("app").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InUse);
    engine.remove_container(&by_name("a")).await.unwrap();
    engine.remove_network("app").await.unwrap();
    assert!(kernel.with(|w| !w.links.contains_key(&net.bridge)));

    kernel.with(|w| {
        w.links
            .insert("br-mine".into(), (900, LinkKind::Bridge, None));
    });
    let mine = NetworkCreate {
        name: "mine".into(),
        bridge: Some("br-mine".into()),
        ..NetworkCreate::default()
    };
    let err = engine.create_network(mine.clone()).await.unwrap_err();
    assert_eq!(err.remedy, Some(Remedy::AdoptBridge));
    let adopted = engine
        .create_network(NetworkCreate {
            adopt_bridge: true,
            ..mine
        })
        .await
        .unwrap();
    assert!(adopted.adopted_bridge);
    engine.remove_network("mine").await.unwrap();
    assert!(kernel.with(|w| w.links.contains_key("br-mine")));
}

#[tokio::test]
async fn interrupted_adds_are_rolled_back_at_start() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let a = engine.add_container(add("a")).await.unwrap();
    // As a crash between the `Creating` commit and the `Ready` one leaves it.
    let mut half = a.clone();
    half.phase = Phase::Creating;
    half.id = ContainerId("half".into());
    half.name = "half".into();
    store.commit(&[Change::PutContainer(half)]).unwrap();
    drop(engine);
    let engine = engine_with(&kernel, &store).await;
    assert!(engine.container("half").is_err());
    assert!(engine.container("a").is_ok());
}

#[tokio::test]
async fn runtime_sandboxes_get_the_peer_on_the_host() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let mut req = add("docker-ep");
    req.id = Some("sandbox-1".into());
    req.sandbox = SandboxRequest::Runtime;
    let ep = req.endpoint.as_mut().unwrap();
    ep.peer_on_host = true;
    ep.id = Some("ep-1".into());
    let c = engine.add_container(req).await.unwrap();
    let Placement::OnHost { peer } = &c.endpoints[0].placement else {
        panic!("peer not on the host: {:?}", c.endpoints[0].placement);
    };
    assert!(kernel.with(|w| w.links.contains_key(peer)));
    assert_eq!(c.id.0, "sandbox-1");
    assert_eq!(c.endpoints[0].id.as_deref(), Some("ep-1"));
    // netd never deletes a namespace it did not make.
    engine
        .remove_container(&by_name("docker-ep"))
        .await
        .unwrap();
}

#[tokio::test]
async fn given_namespaces_are_used_and_never_deleted() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let path = PathBuf::from("/var/run/netns/cni-1234");
    kernel.with(|w| w.namespaces.insert(path.clone()));
    let engine = engine_with(&kernel, &store).await;
    let mut req = add("pod");
    req.sandbox = SandboxRequest::Given { path: path.clone() };
    engine.add_container(req).await.unwrap();
    assert!(kernel.with(|w| w.inside.contains(&(path.clone(), "eth0".into()))));
    engine.remove_container(&by_name("pod")).await.unwrap();
    assert!(kernel.with(|w| w.namespaces.contains(&path)));
    // The runtime may reuse its namespace and the interface name at once.
    let mut again = add("pod");
    again.sandbox = SandboxRequest::Given { path: path.clone() };
    engine.add_container(again).await.unwrap();
    let mut missing = add("ghost");
    missing.sandbox = SandboxRequest::Given {
        path: "/var/run/netns/gone".into(),
    };
    let err = engine.add_container(missing).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn mutations_emit_events() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let mut events = engine.subscribe();
    let mut req = add("a");
    req.publish = vec![publish(8080)];
    engine.add_container(req).await.unwrap();
    assert!(matches!(events.try_recv(), Ok(Event::ContainerAdded(c)) if c.name == "a"));
    assert!(matches!(events.try_recv(), Ok(Event::PortsPublished(p)) if p.len() == 1));
    engine.remove_container(&by_name("a")).await.unwrap();
    assert!(matches!(events.try_recv(), Ok(Event::PortsUnpublished(_))));
    assert!(matches!(events.try_recv(), Ok(Event::ContainerRemoved(_))));
}

#[tokio::test]
async fn a_removal_commits_once() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let mut req = add("a");
    req.publish = vec![publish(8080), publish(8081)];
    engine.add_container(req).await.unwrap();
    let before = store.0.commits();
    engine.remove_container(&by_name("a")).await.unwrap();
    assert_eq!(store.0.commits(), before + 1);
    let state = store.load().unwrap();
    assert!(state.containers.is_empty() && state.portmaps.is_empty());
    assert!(kernel.with(|w| w.ports.is_empty() && w.services.is_empty()));
}

#[tokio::test]
async fn open_host_ports_are_picked_from_the_ephemeral_range() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    kernel.with(|w| {
        w.listening.push(super::model::HostSocket {
            addr: ip("0.0.0.0"),
            port: 49152,
            proto: Proto::Tcp,
        })
    });
    let engine = engine_with(&kernel, &store).await;
    let mut req = add("a");
    req.publish = vec![
        Publish {
            host_ports: PortRange { start: 0, end: 0 },
            ..publish(1)
        },
        Publish {
            host_ports: PortRange { start: 0, end: 0 },
            container_ports: PortRange { start: 81, end: 83 },
            ..publish(1)
        },
    ];
    engine.add_container(req).await.unwrap();
    let mut ports: Vec<_> = engine
        .portmaps()
        .into_iter()
        .map(|p| p.mapping.host_ports)
        .collect();
    ports.sort_by_key(|p| p.start);
    assert_eq!(
        ports,
        vec![
            PortRange {
                start: 49153,
                end: 49153
            },
            PortRange {
                start: 49154,
                end: 49156
            }
        ]
    );
    let mut more = add("b");
    more.publish = vec![Publish {
        host_ports: PortRange { start: 0, end: 0 },
        container_ports: PortRange { start: 1, end: 4 },
        ..publish(1)
    }];
    let err = engine.add_container(more).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Exhausted, "{err}");
}

#[tokio::test]
async fn reads_do_not_wait_for_a_slow_mutation() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    engine.add_container(add("a")).await.unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    kernel.with(|w| w.gate = Some(gate.clone()));
    let slow = tokio::spawn({
        let engine = engine.clone();
        async move { engine.add_container(add("b")).await }
    });
    for _ in 0..1000 {
        if kernel.with(|w| w.waiting) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        kernel.with(|w| w.waiting),
        "the add never reached the kernel"
    );
    // The add holds the mutation lock; reads answer regardless, and see
    // the half-made container as such.
    assert_eq!(engine.container("b").unwrap().phase, Phase::Creating);
    assert!(engine.container("a").is_ok());
    assert!(engine.network("bridge").is_ok());
    assert!(engine.stats().is_ok());
    gate.notify_one();
    slow.await.unwrap().unwrap();
    assert_eq!(engine.container("b").unwrap().phase, Phase::Ready);
}

fn dual(name: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ipv6: true,
        ..NetworkCreate::default()
    }
}

#[tokio::test]
async fn dual_stack_networks_take_a_ula_subnet_and_hand_out_v6_in_order() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let net = engine.create_network(dual("app")).await.unwrap();
    assert_eq!(net.subnet.to_string(), "172.18.0.0/16");
    assert_eq!(net.subnet6.unwrap().to_string(), "fd00:6e65:7464::/64");
    assert_eq!(net.gateway6, Some(ip("fd00:6e65:7464::1")));
    // The bridge carries both gateways.
    kernel.with(|w| {
        let on_bridge: Vec<String> = w
            .addresses
            .iter()
            .filter(|(n, _)| *n == net.bridge)
            .map(|(_, a)| a.to_string())
            .collect();
        assert!(on_bridge.contains(&"172.18.0.1/16".into()), "{on_bridge:?}");
        assert!(
            on_bridge.contains(&"fd00:6e65:7464::1/64".into()),
            "{on_bridge:?}"
        );
    });
    let second = engine.create_network(dual("other")).await.unwrap();
    assert_eq!(second.subnet6.unwrap().to_string(), "fd00:6e65:7464:1::/64");

    let on_app = |name: &str, ip6: Option<&str>| {
        let mut req = add(name);
        let ep = req.endpoint.as_mut().unwrap();
        ep.network = "app".into();
        ep.ip6 = ip6.map(ip);
        req
    };
    let a = engine.add_container(on_app("a", None)).await.unwrap();
    let b = engine.add_container(on_app("b", None)).await.unwrap();
    assert_eq!(a.endpoints[0].ip, ip("172.18.0.2"));
    assert_eq!(a.endpoints[0].ip6, Some(ip("fd00:6e65:7464::2")));
    assert_eq!(b.endpoints[0].ip6, Some(ip("fd00:6e65:7464::3")));
    // The MAC follows the IPv4 address, as Docker's.
    assert_eq!(a.endpoints[0].mac, "02:42:ac:12:00:02");
    let fixed = engine
        .add_container(on_app("c", Some("fd00:6e65:7464::99")))
        .await
        .unwrap();
    assert_eq!(fixed.endpoints[0].ip6, Some(ip("fd00:6e65:7464::99")));
    let taken = engine
        .add_container(on_app("d", Some("fd00:6e65:7464::2")))
        .await
        .unwrap_err();
    assert_eq!(taken.kind, ErrorKind::Conflict);
    let outside = engine
        .add_container(on_app("e", Some("fd00:99::2")))
        .await
        .unwrap_err();
    assert_eq!(outside.kind, ErrorKind::InvalidInput);
    // Inside the namespace: both addresses, both default routes.
    kernel.with(|w| {
        let (addrs, gateways) = w
            .configured
            .get(&(PathBuf::from("/fake/netns/a"), "eth0".to_string()))
            .cloned()
            .unwrap();
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["172.18.0.2/16", "fd00:6e65:7464::2/64"]);
        assert_eq!(gateways, [ip("172.18.0.1"), ip("fd00:6e65:7464::1")]);
        assert_eq!(
            w.endpoints[&ip("172.18.0.2")].ip6,
            Some(ip("fd00:6e65:7464::2"))
        );
    });
    // Freed v6 addresses are reused first.
    engine.remove_container(&by_name("a")).await.unwrap();
    let f = engine.add_container(on_app("f", None)).await.unwrap();
    assert_eq!(f.endpoints[0].ip6, Some(ip("fd00:6e65:7464::2")));
}

#[tokio::test]
async fn v6_requests_are_checked_per_family() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let kind = |r: super::error::Result<_>| {
        r.map(|_: crate::engine::model::Network| ())
            .map_err(|e| e.kind)
    };
    let mut no_flag = dual("a");
    no_flag.ipv6 = false;
    no_flag.subnet6 = Some("fd00:1::/64".parse().unwrap());
    assert_eq!(
        kind(engine.create_network(no_flag).await),
        Err(ErrorKind::InvalidInput)
    );
    let mut v6_as_v4 = dual("b");
    v6_as_v4.subnet = Some("fd00:1::/64".parse().unwrap());
    assert_eq!(
        kind(engine.create_network(v6_as_v4).await),
        Err(ErrorKind::InvalidInput)
    );
    let mut host_bits = dual("c");
    host_bits.subnet6 = Some("fd00:1::5/64".parse().unwrap());
    assert_eq!(
        kind(engine.create_network(host_bits).await),
        Err(ErrorKind::InvalidInput)
    );
    let mut given = dual("d");
    given.subnet6 = Some("fd00:1::/64".parse().unwrap());
    given.gateway6 = Some(ip("fd00:1::fe"));
    let d = engine.create_network(given).await.unwrap();
    assert_eq!(d.gateway6, Some(ip("fd00:1::fe")));
    let mut overlap = dual("e");
    overlap.subnet6 = Some("fd00:1::/48".parse().unwrap());
    assert_eq!(
        kind(engine.create_network(overlap).await),
        Err(ErrorKind::Conflict)
    );
    // An IPv6 address for a network without IPv6 is refused.
    let mut req = add("x");
    req.endpoint.as_mut().unwrap().ip6 = Some(ip("fd00:1::9"));
    let err = engine.add_container(req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    // A v4-only container gets no IPv6 and no IPv6 route.
    let plain = engine.add_container(add("plain")).await.unwrap();
    assert_eq!(plain.endpoints[0].ip6, None);
}

#[tokio::test]
async fn connect_moves_the_v6_default_route_with_the_v4_one() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    let mut internal = dual("inner");
    internal.internal = true;
    engine.create_network(internal).await.unwrap();
    engine.create_network(dual("outer")).await.unwrap();
    let mut req = add("a");
    req.endpoint.as_mut().unwrap().network = "inner".into();
    engine.add_container(req).await.unwrap();
    let ns = PathBuf::from("/fake/netns/a");
    assert_eq!(kernel.with(|w| w.routes6.get(&ns).cloned()), None);
    let endpoint = EndpointRequest {
        network: "outer".into(),
        id: None,
        ifname: None,
        ip: None,
        ip6: None,
        peer_on_host: false,
    };
    engine.connect(&by_name("a"), endpoint).await.unwrap();
    let outer = engine.network("outer").unwrap();
    assert_eq!(
        kernel.with(|w| w.routes6.get(&ns).cloned()),
        Some(outer.gateway6)
    );
    engine
        .disconnect(
            &by_name("a"),
            &crate::engine::requests::EndpointRef::Network("outer".into()),
        )
        .await
        .unwrap();
    assert_eq!(kernel.with(|w| w.routes6.get(&ns).cloned()), Some(None));
}

#[tokio::test]
async fn the_default_network_follows_default_subnet6_while_empty() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    let engine = engine_with(&kernel, &store).await;
    assert_eq!(engine.network("bridge").unwrap().subnet6, None);
    drop(engine);
    let mut dual = config();
    dual.default_subnet6 = Some("fd00:17::/64".parse().unwrap());
    let start = |config: EngineConfig| {
        Engine::start(config, Box::new(store.clone()), kernel.kernel(), vec![])
    };
    let engine = start(dual.clone()).await.unwrap();
    let net = engine.network("bridge").unwrap();
    assert_eq!(net.gateway6, Some(ip("fd00:17::1")));
    let bridge_has = |addr: &str| {
        kernel.with(|w| {
            w.addresses
                .iter()
                .any(|(n, a)| n == "netd0" && a.to_string() == addr)
        })
    };
    assert!(bridge_has("fd00:17::1/64"));
    let a = engine.add_container(add("a")).await.unwrap();
    assert_eq!(a.endpoints[0].ip6, Some(ip("fd00:17::2")));
    drop(engine);
    // With a container on it, the subnet stays.
    let engine = start(config()).await.unwrap();
    assert_eq!(
        engine.network("bridge").unwrap().gateway6,
        Some(ip("fd00:17::1"))
    );
    engine.remove_container(&by_name("a")).await.unwrap();
    drop(engine);
    // Empty again: the flag's absence turns IPv6 off.
    let engine = start(config()).await.unwrap();
    assert_eq!(engine.network("bridge").unwrap().subnet6, None);
    assert!(!bridge_has("fd00:17::1/64"));
}

#[tokio::test]
async fn published_ports_get_an_entry_per_family_they_bind() {
    let (kernel, store) = (FakeKernel::default(), SharedStore::default());
    kernel.with(|w| w.host_addrs = vec![ip("2001:db8::1")]);
    let engine = engine_with(&kernel, &store).await;
    engine.create_network(dual("app")).await.unwrap();
    let on = |network: &str, name: &str, publish: Vec<Publish>| {
        let mut req = add(name);
        req.endpoint.as_mut().unwrap().network = network.into();
        req.publish = publish;
        req
    };
    let at = |host: &str, port: u16, ipv4_only: bool| Publish {
        host_ip: ip(host),
        ipv4_only,
        ..publish(port)
    };
    engine
        .add_container(on(
            "app",
            "a",
            vec![
                publish(8080),
                at("0.0.0.0", 8081, true),
                at("::", 8082, false),
                at("2001:db8::1", 8083, false),
            ],
        ))
        .await
        .unwrap();
    let (v4, v6) = (ip("172.18.0.2"), ip("fd00:6e65:7464::2"));
    let ports = kernel.with(|w| w.ports.clone());
    let entry = |host: &str, port: u16| {
        ports
            .get(&(ip(host), port, Proto::Tcp))
            .map(|e| e.container_ip)
    };
    // No address: both families, each to the container's own address.
    assert_eq!(entry("0.0.0.0", 8080), Some(v4));
    assert_eq!(entry("::", 8080), Some(v6));
    // 0.0.0.0 given: IPv4 only; [::] and an IPv6 address: IPv6 only.
    assert_eq!(entry("0.0.0.0", 8081), Some(v4));
    assert_eq!(entry("::", 8081), None);
    assert_eq!(entry("::", 8082), Some(v6));
    assert_eq!(entry("0.0.0.0", 8082), None);
    assert_eq!(entry("2001:db8::1", 8083), Some(v6));
    assert_eq!(ports.len(), 5, "{ports:?}");

    // An IPv6 host address must be the host's; an IPv6-only binding
    // needs an IPv6 address; conflicts are per family.
    let err = engine
        .add_container(on("app", "b", vec![at("2001:db8::9", 9000, false)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    let err = engine
        .add_container(on("bridge", "c", vec![at("::", 9001, false)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("no IPv6 address"), "{err}");
    let err = engine
        .add_container(on("app", "d", vec![at("2001:db8::1", 8082, false)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    engine
        .add_container(on("app", "e", vec![at("0.0.0.0", 8082, true)]))
        .await
        .unwrap();
    // `portmap rm 8081` names the mapping on 0.0.0.0 written out, as
    // before that form was IPv4 only.
    let side = super::requests::PortSelector::HostSide("8081/tcp".into());
    engine.unpublish(&side).await.unwrap();
    assert_eq!(
        kernel.with(|w| w.ports.keys().filter(|k| k.1 == 8081).count()),
        0
    );
    // Removing the container removes both families' entries.
    engine.remove_container(&by_name("a")).await.unwrap();
    let left: Vec<u16> = kernel.with(|w| w.ports.keys().map(|k| k.1).collect());
    assert_eq!(left, vec![8082], "{left:?}");
}
