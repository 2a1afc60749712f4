//! netd against the baseline binary (`--baseline-bin`): what a change to
//! netd costs, as same-run ratios new/baseline. Both binaries run in every
//! repeat on fresh testbeds, so a drift of the machine (±5 % between
//! sequential runs) falls on both and cancels in the ratio.

use std::fmt::Write as _;

use super::{
    datapath::Kind,
    report::verdict,
    results::{Metric, PORT_STEPS, Samples},
    stats::Summary,
};

/// New connections/s with 0 extra ports may lose at most 3 % against the
/// baseline (the connection-tracking issue's budget).
const CONN_TARGET: f64 = 0.97;

/// The metrics compared, in the order of the data-plane table.
fn metrics() -> Vec<Metric> {
    let mut m: Vec<Metric> = PORT_STEPS
        .iter()
        .map(|&ports| Metric::ConnRate { ports })
        .collect();
    m.extend([
        Metric::ConnCpu,
        Metric::ReqRate,
        Metric::LatP50,
        Metric::LatP99,
        Metric::TcpIn,
        Metric::TcpOut,
        Metric::TcpC2c,
    ]);
    m
}

/// Per-repeat ratios new/baseline of `metric`: median, min and max.
fn ratio(samples: &Samples, metric: Metric) -> Option<Summary> {
    let r = samples.ratios((Kind::Netd, metric), (Kind::NetdBaseline, metric));
    Summary::of(r).ok()
}

/// The report section; nothing unless both netd and the baseline ran.
pub fn section(kinds: &[Kind], samples: &Samples, md: &mut String) {
    if !(kinds.contains(&Kind::Netd) && kinds.contains(&Kind::NetdBaseline)) {
        return;
    }
    let n = samples.repeats().len();
    let _ = writeln!(
        md,
        "### netd against the baseline binary\n\n\
         netd is the binary under test, netd (baseline) the `--baseline-bin` one (both named \
         in the header). Both ran in each of the {n} repeat(s), each on a fresh testbed; new/baseline is \
         the median of the per-repeat ratios, min–max in brackets. The change is the \
         median's, better or worse by the metric's arrow.\n"
    );
    md.push_str(
        "| metric | unit | netd | netd (baseline) | new/baseline | change |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for metric in metrics() {
        row(samples, metric, md);
    }
    let _ = writeln!(md, "\n{}\n", target_line(samples));
}

fn row(samples: &Samples, metric: Metric, md: &mut String) {
    let Some(r) = ratio(samples, metric) else {
        return;
    };
    let spec = metric.spec();
    let arrow = if spec.higher_is_better { "↑" } else { "↓" };
    let median = |kind| {
        samples
            .summary(kind, metric)
            .map_or("-".into(), |s| format!("{:.*}", spec.decimals, s.median))
    };
    let better = (r.median >= 1.0) == spec.higher_is_better;
    let _ = writeln!(
        md,
        "| {} | {} {arrow} | {} | {} | {} | {:+.1} % ({}) |",
        spec.label,
        spec.unit,
        median(Kind::Netd),
        median(Kind::NetdBaseline),
        ratio_text(&r),
        (r.median - 1.0) * 100.0,
        if r.median == 1.0 {
            "same"
        } else if better {
            "better"
        } else {
            "worse"
        }
    );
}

/// `0.98× (0.96–1.01×)`, or just the median of a single repeat.
fn ratio_text(r: &Summary) -> String {
    if r.n < 2 {
        return format!("{:.3}×", r.median);
    }
    format!("{:.3}× ({:.3}–{:.3}×)", r.median, r.min, r.max)
}

fn target_line(samples: &Samples) -> String {
    let r = ratio(samples, Metric::ConnRate { ports: 0 });
    let measured = r.as_ref().map_or("-".into(), ratio_text);
    format!(
        "Target: new conn/s ≥ {CONN_TARGET} × baseline (0 extra ports): {} ({measured})",
        verdict(r.map(|r| r.median >= CONN_TARGET))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(new: &[f64], base: &[f64]) -> Samples {
        let mut s = Samples::default();
        let conn = Metric::ConnRate { ports: 0 };
        for (r, (&a, &b)) in (0..).zip(new.iter().zip(base)) {
            s.push(r, Kind::Netd, conn, a);
            s.push(r, Kind::NetdBaseline, conn, b);
        }
        s
    }

    #[test]
    fn section_only_with_the_baseline() {
        let s = samples(&[100.0], &[100.0]);
        let mut md = String::new();
        section(&[Kind::Netd, Kind::Iptables], &s, &mut md);
        assert!(md.is_empty());
        section(&[Kind::Netd, Kind::NetdBaseline], &s, &mut md);
        assert!(md.contains("| new conn/s, 0 other ports | conn/s ↑ | 100 | 100 | 1.000× |"));
    }

    #[test]
    fn target_on_the_median_of_same_run_ratios() {
        // Repeat 1 drifted down for both binaries: its ratio still counts 0.98.
        let met = samples(&[98.0, 49.0, 100.0], &[100.0, 50.0, 97.0]);
        assert!(target_line(&met).contains(": MET (0.980× (0.980–1.031×))"));
        let missed = samples(&[96.0, 95.0, 97.0], &[100.0, 100.0, 100.0]);
        assert!(target_line(&missed).contains(": MISSED (0.960×"));
        assert!(target_line(&Samples::default()).contains("not measured (-)"));
    }
}
