//! What a run measured: one sample per (repeat, datapath, metric), plus the
//! control-plane, memory and profile figures of netd.

use serde::Serialize;

use super::{
    datapath::{Family, Kind},
    stats::Summary,
};

/// Port counts of the connection-rate scaling test.
pub const PORT_STEPS: [u32; 3] = [0, 1000, 10000];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// New connections/s (`Connection: close`), with N extra published ports.
    ConnRate {
        ports: u32,
    },
    /// p99 latency of the connection-rate test with 0 extra ports, µs.
    ConnP99,
    /// CPU time of the whole machine per connection, µs.
    ConnCpu,
    /// Requests/s over 50 keep-alive connections.
    ReqRate,
    /// Latency of one keep-alive connection, µs.
    LatP50,
    LatP99,
    /// TCP throughput, Gbit/s, and CPU seconds per GB transferred.
    TcpIn,
    TcpInCpu,
    TcpOut,
    TcpOutCpu,
    TcpC2c,
    TcpC2cCpu,
    /// Time to install N extra published ports (rule load or `portmap add`), ms.
    PublishMs {
        ports: u32,
    },
    /// Busy CPU of the machine, %, in 1 s with the datapath idle (other work).
    IdleLoad,
    /// The IPv6 part (dual-stack testbed): new connections/s through the
    /// published port, CPU µs per connection, TCP Gbit/s inbound through
    /// the published port and outbound (MASQUERADE), per family.
    FamilyConn(Family),
    FamilyConnCpu(Family),
    FamilyTcpIn(Family),
    FamilyTcpOut(Family),
}

pub struct Spec {
    pub label: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub decimals: usize,
}

impl Metric {
    pub fn spec(self) -> Spec {
        let (label, unit, higher, decimals) = match self {
            Metric::ConnRate { ports } => (
                format!("new conn/s, {} other ports", ports_label(ports)),
                "conn/s",
                true,
                0,
            ),
            Metric::ConnP99 => ("new conn p99 latency".into(), "µs", false, 0),
            Metric::ConnCpu => ("CPU per new connection".into(), "µs", false, 1),
            Metric::ReqRate => ("keep-alive req/s (50 conns)".into(), "req/s", true, 0),
            Metric::LatP50 => ("1-conn latency p50".into(), "µs", false, 0),
            Metric::LatP99 => ("1-conn latency p99".into(), "µs", false, 0),
            Metric::TcpIn => ("TCP inbound (published port)".into(), "Gbit/s", true, 2),
            Metric::TcpInCpu => ("CPU per GB, inbound".into(), "s/GB", false, 2),
            Metric::TcpOut => ("TCP outbound (MASQUERADE)".into(), "Gbit/s", true, 2),
            Metric::TcpOutCpu => ("CPU per GB, outbound".into(), "s/GB", false, 2),
            Metric::TcpC2c => ("TCP container to container".into(), "Gbit/s", true, 2),
            Metric::TcpC2cCpu => (
                "CPU per GB, container to container".into(),
                "s/GB",
                false,
                2,
            ),
            Metric::PublishMs { ports } => (
                format!("install {} extra ports", ports_label(ports)),
                "ms",
                false,
                1,
            ),
            Metric::IdleLoad => ("other load before the tests".into(), "% CPU", false, 0),
            Metric::FamilyConn(_) => ("new conn/s (published port)".into(), "conn/s", true, 0),
            Metric::FamilyConnCpu(_) => ("CPU per new connection".into(), "µs", false, 1),
            Metric::FamilyTcpIn(_) => ("TCP inbound (published port)".into(), "Gbit/s", true, 2),
            Metric::FamilyTcpOut(_) => ("TCP outbound (MASQUERADE)".into(), "Gbit/s", true, 2),
        };
        Spec {
            label,
            unit,
            higher_is_better: higher,
            decimals,
        }
    }

    /// Display order of the data-plane table.
    pub fn table_order() -> Vec<Metric> {
        let mut order: Vec<Metric> = PORT_STEPS
            .iter()
            .map(|&ports| Metric::ConnRate { ports })
            .collect();
        order.extend([
            Metric::ConnP99,
            Metric::ConnCpu,
            Metric::ReqRate,
            Metric::LatP50,
            Metric::LatP99,
            Metric::TcpIn,
            Metric::TcpInCpu,
            Metric::TcpOut,
            Metric::TcpOutCpu,
            Metric::TcpC2c,
            Metric::TcpC2cCpu,
        ]);
        order.extend(
            PORT_STEPS[1..]
                .iter()
                .map(|&ports| Metric::PublishMs { ports }),
        );
        order.push(Metric::IdleLoad);
        order
    }
}

impl Metric {
    /// The IPv6 part's tests, each a metric per family, in display order.
    pub fn family_tests() -> [fn(Family) -> Metric; 4] {
        [
            Metric::FamilyConn,
            Metric::FamilyConnCpu,
            Metric::FamilyTcpIn,
            Metric::FamilyTcpOut,
        ]
    }
}

pub fn ports_label(ports: u32) -> String {
    if ports >= 1000 && ports.is_multiple_of(1000) {
        format!("{},000", ports / 1000)
    } else {
        ports.to_string()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub repeat: u32,
    pub kind: Kind,
    pub metric: Metric,
    pub value: f64,
}

#[derive(Default, Serialize)]
pub struct Samples {
    pub samples: Vec<Sample>,
}

impl Samples {
    pub fn push(&mut self, repeat: u32, kind: Kind, metric: Metric, value: f64) {
        self.samples.push(Sample {
            repeat,
            kind,
            metric,
            value,
        });
    }

    /// The value of one repeat, if measured.
    pub fn get(&self, repeat: u32, kind: Kind, metric: Metric) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.repeat == repeat && s.kind == kind && s.metric == metric)
            .map(|s| s.value)
    }

    pub fn summary(&self, kind: Kind, metric: Metric) -> Option<Summary> {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.kind == kind && s.metric == metric)
            .map(|s| s.value)
            .collect();
        Summary::of(values).ok()
    }

    pub fn repeats(&self) -> Vec<u32> {
        let mut repeats: Vec<u32> = self.samples.iter().map(|s| s.repeat).collect();
        repeats.sort_unstable();
        repeats.dedup();
        repeats
    }

    /// Per-repeat ratios `a[r] / b[r]` (same run, so drift cancels).
    pub fn ratios(&self, a: (Kind, Metric), b: (Kind, Metric)) -> Vec<f64> {
        self.repeats()
            .into_iter()
            .filter_map(|r| {
                let (x, y) = (self.get(r, a.0, a.1)?, self.get(r, b.0, b.1)?);
                (y != 0.0).then_some(x / y)
            })
            .collect()
    }
}

/// Control plane of netd.
#[derive(Serialize)]
pub struct Control {
    pub containers: usize,
    pub add_ms: Summary,
    pub rm_ms: Summary,
    /// One `portmap add` of a 10,000-port range, whole CLI process.
    pub portmap_add_10k_ms: Summary,
    pub portmap_rm_10k_ms: Summary,
}

/// Memory of netd with 10,000 mappings and the conntrack flood.
#[derive(Serialize)]
pub struct Memory {
    pub rss_idle_kib: u64,
    pub rss_10k_kib: u64,
    pub rss_ct_kib: u64,
    pub ct_entries: u64,
    pub maps: Vec<MapMem>,
}

#[derive(Serialize)]
pub struct MapMem {
    pub name: String,
    pub kind: String,
    pub max_entries: u64,
    pub bytes_memlock: u64,
}

/// Run time of netd's programs: one `ProfileRun` per (binary, repeat,
/// test).
#[derive(Serialize)]
pub struct Profile {
    pub runs: Vec<ProfileRun>,
}

/// The test a profile run measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfTest {
    /// New connections (`Connection: close`): per-connection and
    /// per-packet work.
    Conn,
    /// 50 keep-alive connections: per-packet work of established flows.
    KeepAlive,
    /// One iperf3 stream from the container out (MASQUERADE): the
    /// per-packet work of a bulk transfer; its "request" is a MB moved.
    Outbound,
    /// `--parts profile-ipv6` (a dual-stack testbed): new connections over
    /// IPv4, then over IPv6, through the published port.
    ConnV4,
    ConnV6,
    /// ... and an outbound bulk transfer over each family.
    OutboundV4,
    OutboundV6,
}

impl ProfTest {
    pub const ALL: [ProfTest; 3] = [ProfTest::Conn, ProfTest::KeepAlive, ProfTest::Outbound];
    pub const FAMILIES: [ProfTest; 4] = [
        ProfTest::ConnV4,
        ProfTest::ConnV6,
        ProfTest::OutboundV4,
        ProfTest::OutboundV6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProfTest::Conn => "conn-rate",
            ProfTest::KeepAlive => "keep-alive",
            ProfTest::Outbound => "outbound",
            ProfTest::ConnV4 => "conn-rate IPv4 (dual-stack)",
            ProfTest::ConnV6 => "conn-rate IPv6 (dual-stack)",
            ProfTest::OutboundV4 => "outbound IPv4 (dual-stack)",
            ProfTest::OutboundV6 => "outbound IPv6 (dual-stack)",
        }
    }

    /// The unit of `ProfileRun::rate` and what one "request" is.
    pub fn units(self) -> (&'static str, &'static str) {
        match self {
            ProfTest::Outbound | ProfTest::OutboundV4 | ProfTest::OutboundV6 => ("Gbit/s", "MB"),
            _ => ("req/s", "request"),
        }
    }
}

#[derive(Serialize)]
pub struct ProfileRun {
    pub kind: Kind,
    pub repeat: u32,
    pub test: ProfTest,
    /// Requests (= connections for `Conn`) per second.
    pub rate: f64,
    pub cpu_us_per_req: f64,
    pub progs: Vec<ProgCost>,
}

#[derive(Serialize)]
pub struct ProgCost {
    /// The pinned links that run this program.
    pub links: String,
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
    /// Runs per request (per connection in the connection-rate test).
    pub runs_per_req: f64,
}
