//! Order statistics of a handful of samples.

use anyhow::{Result, bail};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(mut samples: Vec<f64>) -> Result<Self> {
        samples.retain(|v| v.is_finite());
        if samples.is_empty() {
            bail!("no samples");
        }
        samples.sort_by(f64::total_cmp);
        Ok(Summary {
            n: samples.len(),
            min: samples[0],
            median: median_sorted(&samples),
            p99: nearest_rank(&samples, 99),
            max: samples[samples.len() - 1],
        })
    }
}

/// Median of sorted, non-empty `samples` (mean of the middle two if even).
fn median_sorted(samples: &[f64]) -> f64 {
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Median of any samples; `None` if there are none.
pub fn median(samples: &[f64]) -> Option<f64> {
    Summary::of(samples.to_vec()).ok().map(|s| s.median)
}

/// Nearest-rank percentile of sorted, non-empty `samples`.
fn nearest_rank(samples: &[f64], pct: usize) -> f64 {
    let rank = (pct * samples.len()).div_ceil(100).max(1);
    samples[rank.min(samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts() -> Result<()> {
        let s = Summary::of(vec![3.0, 1.0, 2.0])?;
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let many: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Summary::of(many)?.p99, 99.0);
        Ok(())
    }
}
