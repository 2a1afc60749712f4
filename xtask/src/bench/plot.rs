//! The connection-rate plot: new connections/s against the number of
//! published ports, one line per datapath (median, min–max bars); routed
//! and host publish nothing and are drawn as flat reference lines.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::{coord::types::RangedCoordf64, prelude::*};

use super::{
    datapath::Kind,
    results::{Metric, PORT_STEPS, Samples, ports_label},
};

const SIZE: (u32, u32) = (860, 520);

fn color(kind: Kind) -> RGBColor {
    match kind {
        Kind::Netd => RGBColor(0xd6, 0x27, 0x28),
        // netd's red, lighter: the same daemon, the other binary.
        Kind::NetdBaseline => RGBColor(0xff, 0x98, 0x96),
        Kind::Iptables => RGBColor(0x1f, 0x77, 0xb4),
        Kind::DockerFull => RGBColor(0x94, 0x67, 0xbd),
        Kind::Nftables => RGBColor(0x2c, 0xa0, 0x2c),
        Kind::Routed => RGBColor(0xff, 0x7f, 0x0e),
        Kind::Host => RGBColor(0x40, 0x40, 0x40),
    }
}

/// One port step: x position, then median, min and max connections/s.
#[derive(Clone, Copy)]
struct Point {
    x: f64,
    med: f64,
    lo: f64,
    hi: f64,
}

type Series = (Kind, Vec<Point>);

/// The port steps of `kind` that were measured.
fn points(samples: &Samples, kind: Kind) -> Vec<Point> {
    let steps: &[u32] = if kind.publishes() {
        &PORT_STEPS
    } else {
        &PORT_STEPS[..1]
    };
    let mut pts: Vec<Point> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, &ports)| {
            let s = samples.summary(kind, Metric::ConnRate { ports })?;
            Some(Point {
                x: i as f64,
                med: s.median,
                lo: s.min,
                hi: s.max,
            })
        })
        .collect();
    if !kind.publishes()
        && let Some(&first) = pts.first()
    {
        // Nothing to publish: the same figure holds at every port count.
        pts = (0..PORT_STEPS.len())
            .map(|i| Point {
                x: i as f64,
                ..first
            })
            .collect();
    }
    pts
}

pub fn draw(samples: &Samples, kinds: &[Kind], path: &Path) -> Result<()> {
    let series: Vec<Series> = kinds
        .iter()
        .map(|&k| (k, points(samples, k)))
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let ymax = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.hi))
        .fold(1.0, f64::max)
        * 1.15;
    render(&series, ymax, path).map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn render(series: &[Series], ymax: f64, path: &Path) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let last = (PORT_STEPS.len() - 1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "New connections/s vs. published ports (wrk, Connection: close)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.25..last + 0.25, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_labels(PORT_STEPS.len())
        .disable_x_mesh()
        .x_desc("other published ports")
        .y_desc("connections/s (median, min–max)")
        .x_label_formatter(&|x| x_label(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (kind, pts) in series {
        draw_series(&mut chart, *kind, pts)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn x_label(x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    PORT_STEPS
        .get(i as usize)
        .map(|&p| ports_label(p))
        .unwrap_or_default()
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_series(chart: &mut Chart<'_, '_>, kind: Kind, pts: &[Point]) -> DrawResult {
    let c = color(kind);
    let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.x, p.med)).collect();
    let legend =
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2));
    if !kind.publishes() {
        // A reference: the same figure at every port count.
        chart
            .draw_series(DashedLineSeries::new(line, 8, 5, c.stroke_width(2)))?
            .label(format!("{} (no NAT, reference)", kind.name()))
            .legend(legend);
        return Ok(());
    }
    chart
        .draw_series(LineSeries::new(line, c.stroke_width(2)))?
        .label(kind.title())
        .legend(legend);
    chart.draw_series(pts.iter().map(|p| Circle::new((p.x, p.med), 4, c.filled())))?;
    chart.draw_series(
        pts.iter()
            .map(|p| PathElement::new(vec![(p.x, p.lo), (p.x, p.hi)], c.stroke_width(1))),
    )?;
    Ok(())
}
