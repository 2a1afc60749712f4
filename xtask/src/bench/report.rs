//! The markdown report: targets, the data-plane table (medians, spread,
//! same-run ratios), netd against the baseline binary (if benched),
//! control plane, memory and netd's program costs.

use std::fmt::Write as _;

use super::{
    baseline,
    datapath::Kind,
    docker_suite::DockerResults,
    dual,
    results::{
        Control, Memory, Metric, PORT_STEPS, ProfTest, Profile, ProfileRun, ProgCost, Samples,
    },
    stats::{Summary, median},
};

/// What the run was and where.
pub struct Meta {
    pub command: String,
    pub machine: String,
    pub tools: String,
    pub binary: String,
    /// The `--baseline-bin` binary, if any.
    pub baseline: Option<String>,
    pub date: String,
    pub plan: String,
    pub load: String,
    pub elapsed_s: f64,
}

pub struct Report<'a> {
    pub meta: &'a Meta,
    pub kinds: &'a [Kind],
    pub samples: &'a Samples,
    pub control: Option<&'a Control>,
    pub memory: Option<&'a Memory>,
    pub profile: Option<&'a Profile>,
    pub docker: Option<&'a DockerResults>,
    /// The IPv6 part's samples, if it ran.
    pub ipv6: Option<&'a Samples>,
}

pub const CONN_RATIO_TARGET: f64 = 1.3;
const SCALE_TARGET: f64 = 0.95;
const PORTMAP_10K_TARGET_MS: f64 = 1000.0;
const CONTAINER_ADD_TARGET_MS: f64 = 30.0;

struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
}

pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "MET",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.header(&mut md);
        let data = !self.samples.samples.is_empty();
        if data || self.control.is_some() {
            self.targets_table(&mut md);
        }
        if data {
            self.data_table(&mut md);
        }
        baseline::section(self.kinds, self.samples, &mut md);
        self.control_table(&mut md);
        self.memory_table(&mut md);
        self.profile_table(&mut md);
        if let Some(s) = self.ipv6 {
            dual::markdown(&dual::kinds_of(self.kinds), s, &mut md);
        }
        if let Some(d) = self.docker {
            d.markdown(&mut md);
        }
        md
    }

    fn header(&self, md: &mut String) {
        let m = self.meta;
        let _ = writeln!(md, "- Machine: {}", m.machine);
        let _ = writeln!(md, "- Tools: {}", m.tools);
        let _ = writeln!(md, "- netd binary: {}", m.binary);
        if let Some(base) = &m.baseline {
            let _ = writeln!(md, "- Baseline netd binary: {base}");
        }
        let _ = writeln!(md, "- Date: {}; run took {:.0} s", m.date, m.elapsed_s);
        let _ = writeln!(md, "- Command: `{}`", m.command);
        let _ = writeln!(md, "- Plan: {}", m.plan);
        let _ = writeln!(
            md,
            "- Load average (1/5/15 min) at start → end: {}\n",
            m.load
        );
    }

    /// Median over repeats of the per-repeat ratio netd / `other`.
    fn ratio(&self, metric: Metric, other: Kind) -> Option<f64> {
        median(&self.samples.ratios((Kind::Netd, metric), (other, metric)))
    }

    /// Median over repeats of netd's 10,000-port / 0-port connection rate.
    fn scaling(&self) -> Option<f64> {
        let ports = *PORT_STEPS.last()?;
        median(&self.samples.ratios(
            (Kind::Netd, Metric::ConnRate { ports }),
            (Kind::Netd, Metric::ConnRate { ports: 0 }),
        ))
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let conn = self.ratio(Metric::ConnRate { ports: 0 }, Kind::Iptables);
        t.push(Target {
            what: format!("new conn/s ≥ {CONN_RATIO_TARGET}× iptables (0 extra ports)"),
            measured: conn.map_or("-".into(), |r| format!("{r:.2}×")),
            met: conn.map(|r| r >= CONN_RATIO_TARGET),
        });
        let scale = self.scaling();
        t.push(Target {
            what: "new conn/s at 10,000 ports within 5 % of 0 ports".into(),
            measured: scale.map_or("-".into(), |r| {
                format!("{r:.3}× ({:+.1} %)", (r - 1.0) * 100.0)
            }),
            met: scale.map(|r| r >= SCALE_TARGET),
        });
        let lat = self.ratio(Metric::LatP50, Kind::Routed);
        t.push(Target {
            what: "1-connection latency p50 ≤ routed".into(),
            measured: lat.map_or("-".into(), |r| format!("{r:.2}× routed")),
            met: lat.map(|r| r <= 1.0),
        });
        for (metric, cpu, what) in [
            (Metric::TcpIn, Metric::TcpInCpu, "inbound"),
            (Metric::TcpOut, Metric::TcpOutCpu, "outbound"),
            (Metric::TcpC2c, Metric::TcpC2cCpu, "container to container"),
        ] {
            let r = self.ratio(metric, Kind::Iptables);
            let c = self.ratio(cpu, Kind::Iptables);
            t.push(Target {
                what: format!("TCP throughput ≥ iptables, {what}"),
                measured: match (r, c) {
                    (Some(r), Some(c)) => format!("{r:.2}× (CPU/GB {c:.2}×)"),
                    _ => "-".into(),
                },
                met: r.map(|r| r >= 1.0),
            });
        }
        self.control_targets(&mut t);
        t
    }

    fn control_targets(&self, t: &mut Vec<Target>) {
        let c = self.control;
        t.push(Target {
            what: "10,000 port mappings added in < 1 s".into(),
            measured: c.map_or("-".into(), |c| {
                format!("{:.1} ms", c.portmap_add_10k_ms.median)
            }),
            met: c.map(|c| c.portmap_add_10k_ms.median < PORTMAP_10K_TARGET_MS),
        });
        t.push(Target {
            what: "container add < 30 ms (p99)".into(),
            measured: c.map_or("-".into(), |c| {
                format!(
                    "median {:.1} ms, p99 {:.1} ms",
                    c.add_ms.median, c.add_ms.p99
                )
            }),
            met: c.map(|c| c.add_ms.p99 < CONTAINER_ADD_TARGET_MS),
        });
    }

    fn targets_table(&self, md: &mut String) {
        md.push_str("### Targets\n\n| target | measured (median of same-run ratios) | |\n| --- | --- | --- |\n");
        for t in self.targets() {
            let _ = writeln!(md, "| {} | {} | {} |", t.what, t.measured, verdict(t.met));
        }
        md.push('\n');
    }

    fn data_table(&self, md: &mut String) {
        let n = self.samples.repeats().len();
        let _ = writeln!(
            md,
            "### Data plane\n\nMedian over {n} interleaved repeat(s), min–max in brackets; \
             ratios are medians of the per-repeat ratios.\n"
        );
        md.push_str("| metric | unit |");
        for k in self.kinds {
            let _ = write!(md, " {k} |");
        }
        md.push_str(" netd/iptables | netd/routed | target |\n| --- | --- |");
        md.push_str(&" ---: |".repeat(self.kinds.len() + 2));
        md.push_str(" --- |\n");
        for metric in Metric::table_order() {
            self.data_row(md, metric);
        }
        md.push('\n');
    }

    fn data_row(&self, md: &mut String, metric: Metric) {
        let cells: Vec<Option<Summary>> = self
            .kinds
            .iter()
            .map(|&k| self.samples.summary(k, metric))
            .collect();
        if cells.iter().all(Option::is_none) {
            return;
        }
        let spec = metric.spec();
        let arrow = if spec.higher_is_better { "↑" } else { "↓" };
        let _ = write!(md, "| {} | {} {arrow} |", spec.label, spec.unit);
        for cell in &cells {
            let _ = write!(
                md,
                " {} |",
                cell.map_or("-".into(), |s| cell_text(&s, spec.decimals))
            );
        }
        for other in [Kind::Iptables, Kind::Routed] {
            let r = (metric != Metric::IdleLoad)
                .then(|| self.ratio(metric, other))
                .flatten();
            let _ = write!(md, " {} |", r.map_or("-".into(), |r| format!("{r:.2}×")));
        }
        let _ = writeln!(md, " {} |", self.row_target(metric));
    }

    fn row_target(&self, metric: Metric) -> String {
        let last = *PORT_STEPS.last().unwrap_or(&0);
        let (what, met) = match metric {
            Metric::ConnRate { ports: 0 } => (
                format!("≥ {CONN_RATIO_TARGET}× iptables"),
                self.ratio(metric, Kind::Iptables)
                    .map(|r| r >= CONN_RATIO_TARGET),
            ),
            Metric::ConnRate { ports } if ports == last => (
                "≥ 0.95× own 0-port".to_owned(),
                self.scaling().map(|r| r >= SCALE_TARGET),
            ),
            Metric::LatP50 => (
                "≤ routed".to_owned(),
                self.ratio(metric, Kind::Routed).map(|r| r <= 1.0),
            ),
            Metric::TcpIn | Metric::TcpOut | Metric::TcpC2c => (
                "≥ iptables".to_owned(),
                self.ratio(metric, Kind::Iptables).map(|r| r >= 1.0),
            ),
            _ => return String::new(),
        };
        format!("{what}: {}", verdict(met))
    }

    fn control_table(&self, md: &mut String) {
        let Some(c) = self.control else {
            return;
        };
        let _ = writeln!(
            md,
            "### Control plane (netd)\n\nEach a whole `netd` CLI process; {} containers added then removed; \
             the 10,000-port range (`portmap add 10000-19999:172.17.0.2:10000-19999`) added and removed 5 times.\n",
            c.containers
        );
        md.push_str("| operation | min ms | median ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |\n");
        for (name, s) in [
            ("container add", &c.add_ms),
            ("container rm", &c.rm_ms),
            ("portmap add, 10,000 ports", &c.portmap_add_10k_ms),
            ("portmap rm, 10,000 ports", &c.portmap_rm_10k_ms),
        ] {
            let _ = writeln!(
                md,
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
                s.min, s.median, s.p99, s.max
            );
        }
        md.push('\n');
    }

    fn memory_table(&self, md: &mut String) {
        let Some(m) = self.memory else {
            return;
        };
        md.push_str("### Memory (netd)\n\n");
        let _ = writeln!(
            md,
            "Daemon RSS (VmRSS): {} KiB with one container, {} KiB with 10,000 more published ports, \
             {} KiB with {} conntrack entries. Kernel memory of the maps (`bpftool map show`, \
             preallocated, so it does not grow with entries):\n",
            m.rss_idle_kib, m.rss_10k_kib, m.rss_ct_kib, m.ct_entries
        );
        md.push_str("| map | type | max entries | memlock KiB |\n| --- | --- | ---: | ---: |\n");
        let mut total = 0;
        for map in &m.maps {
            total += map.bytes_memlock;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                map.name,
                map.kind,
                map.max_entries,
                map.bytes_memlock / 1024
            );
        }
        let _ = writeln!(md, "| total | | | {} |\n", total / 1024);
    }

    fn profile_table(&self, md: &mut String) {
        let Some(p) = self.profile else {
            return;
        };
        let kinds: Vec<Kind> = [Kind::Netd, Kind::NetdBaseline]
            .into_iter()
            .filter(|k| p.runs.iter().any(|r| r.kind == *k))
            .collect();
        let ab = kinds.len() == 2;
        let repeats = p.runs.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
        let _ = writeln!(
            md,
            "### netd program cost\n\nBPF run-time stats (BPF_ENABLE_STATS, on only for these \
             extra runs), {repeats} repeat(s){}: a connection-rate run, a keep-alive run \
             (50 connections) and an outbound iperf3 run (MASQUERADE) per testbed. Medians over the repeats{}; µs/req is runs/req × \
             ns/run, against the machine's total CPU per request.\n",
            if ab {
                " of netd and the baseline binary, the order alternating"
            } else {
                ""
            },
            if ab {
                "; new/base is the median of the per-repeat ratios of ns/run, min–max in brackets"
            } else {
                ", min–max in brackets"
            }
        );
        for test in ProfTest::ALL.into_iter().chain(ProfTest::FAMILIES) {
            if p.runs.iter().any(|r| r.test == test) {
                profile_test(p, test, &kinds, md);
            }
        }
    }
}

/// The median (min–max) over repeats of `f` for `kind`'s runs of `test`.
fn prof_summary(
    p: &Profile,
    kind: Kind,
    test: ProfTest,
    f: impl Fn(&ProfileRun) -> Option<f64>,
) -> Option<Summary> {
    let v: Vec<f64> = p
        .runs
        .iter()
        .filter(|r| r.kind == kind && r.test == test)
        .filter_map(f)
        .collect();
    Summary::of(v).ok()
}

fn prog_of<'a>(run: &'a ProfileRun, name: &str) -> Option<&'a ProgCost> {
    run.progs.iter().find(|c| c.name == name)
}

/// µs of all programs per request of one run.
fn prog_total(run: &ProfileRun) -> f64 {
    run.progs
        .iter()
        .map(|c| c.runs_per_req * c.ns_per_run / 1000.0)
        .sum()
}

/// Per-repeat ratios netd/baseline of `f` over `test`'s runs.
fn prof_ratio(
    p: &Profile,
    test: ProfTest,
    f: impl Fn(&ProfileRun) -> Option<f64>,
) -> Option<Summary> {
    let mut v = Vec::new();
    for new in p
        .runs
        .iter()
        .filter(|r| r.kind == Kind::Netd && r.test == test)
    {
        let base = p
            .runs
            .iter()
            .find(|r| r.kind == Kind::NetdBaseline && r.test == test && r.repeat == new.repeat);
        if let (Some(a), Some(b)) = (f(new), base.and_then(&f)) {
            v.push(a / b);
        }
    }
    Summary::of(v).ok()
}

fn profile_test(p: &Profile, test: ProfTest, kinds: &[Kind], md: &mut String) {
    let mut names: Vec<&str> = Vec::new();
    for run in p.runs.iter().filter(|r| r.test == test) {
        for c in &run.progs {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
    }
    let med =
        |s: Option<Summary>, d: usize| s.map_or("-".to_owned(), |s| format!("{:.*}", d, s.median));
    let spread = |s: Option<Summary>, d: usize| s.map_or("-".to_owned(), |s| cell_text(&s, d));
    let (rate_unit, per) = test.units();
    let rates: Vec<String> = kinds
        .iter()
        .map(|&k| {
            format!(
                "{}: {} {rate_unit}, {} µs of CPU per {per}",
                k.title(),
                med(prof_summary(p, k, test, |r| Some(r.rate)), 2),
                med(prof_summary(p, k, test, |r| Some(r.cpu_us_per_req)), 1)
            )
        })
        .collect();
    let note = if per == "request" {
        String::new()
    } else {
        format!("; runs/req and µs/req are per {per}")
    };
    let _ = writeln!(md, "**{}** ({}{note}).\n", test.name(), rates.join("; "));
    if kinds.len() == 2 {
        md.push_str(
            "| program | runs/req | runs/req (baseline) | ns/run | ns/run (baseline) | new/base ns/run | µs/req | µs/req (baseline) |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
    } else {
        md.push_str("| program | runs/req | ns/run | µs/req |\n| --- | ---: | ---: | ---: |\n");
    }
    for name in names {
        let runs = |k| {
            med(
                prof_summary(p, k, test, |r| prog_of(r, name).map(|c| c.runs_per_req)),
                2,
            )
        };
        let ns = |k| prof_summary(p, k, test, |r| prog_of(r, name).map(|c| c.ns_per_run));
        let us = |k| {
            med(
                prof_summary(p, k, test, |r| {
                    prog_of(r, name).map(|c| c.runs_per_req * c.ns_per_run / 1000.0)
                }),
                2,
            )
        };
        if kinds.len() == 2 {
            let ratio = prof_ratio(p, test, |r| prog_of(r, name).map(|c| c.ns_per_run));
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                runs(Kind::Netd),
                runs(Kind::NetdBaseline),
                med(ns(Kind::Netd), 0),
                med(ns(Kind::NetdBaseline), 0),
                spread(ratio, 3),
                us(Kind::Netd),
                us(Kind::NetdBaseline)
            );
        } else {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} |",
                runs(Kind::Netd),
                spread(ns(Kind::Netd), 0),
                us(Kind::Netd)
            );
        }
    }
    let total = |k| prof_summary(p, k, test, |r| Some(prog_total(r)));
    let share = |k| {
        prof_summary(p, k, test, |r| {
            Some(prog_total(r) * 100.0 / r.cpu_us_per_req.max(f64::MIN_POSITIVE))
        })
    };
    if kinds.len() == 2 {
        let ratio = prof_ratio(p, test, |r| Some(prog_total(r)));
        let _ = writeln!(
            md,
            "| total | | | | | {} | {} ({} %) | {} ({} %) |\n",
            spread(ratio, 3),
            med(total(Kind::Netd), 2),
            med(share(Kind::Netd), 1),
            med(total(Kind::NetdBaseline), 2),
            med(share(Kind::NetdBaseline), 1)
        );
    } else {
        let _ = writeln!(
            md,
            "| total | | | {} ({} % of the CPU per request) |\n",
            med(total(Kind::Netd), 2),
            med(share(Kind::Netd), 1)
        );
    }
}

pub fn cell_text(s: &Summary, decimals: usize) -> String {
    if s.n < 2 {
        return format!("{:.*}", decimals, s.median);
    }
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, s.median, decimals, s.min, decimals, s.max
    )
}
