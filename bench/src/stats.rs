//! Order statistics over timing samples, and how numbers are printed.

use std::time::Duration;

/// Samples of one measurement, kept sorted for order statistics.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<f64>,
}

impl FromIterator<f64> for Samples {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Samples {
        let mut s = Samples::new();
        for v in iter {
            s.push(v);
        }
        s
    }
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, v: f64) {
        let at = self.sorted.partition_point(|x| *x <= v);
        self.sorted.insert(at, v);
    }

    pub fn push_duration(&mut self, d: Duration) {
        self.push(d.as_secs_f64());
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The median; the mean of the two middle samples for an even count.
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(self.sorted[n / 2]),
            _ => Some((self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2.0),
        }
    }

    /// Nearest-rank percentile (`p` in 0..=100): the smallest sample with at
    /// least p% of the samples at or below it. With fewer than 100 samples,
    /// p99 is the maximum, which is what a reader of a short run should see.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.sorted[rank.clamp(1, n) - 1])
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted.first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }
}

/// Seconds as a short human figure: `850µs`, `12.3ms`, `1.42s`.
pub fn fmt_secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 0.1 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// Bits per second as `Gbit/s` or `Mbit/s`.
pub fn fmt_bps(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else {
        format!("{:.0} Mbit/s", bps / 1e6)
    }
}

/// Kibibytes as `MiB` with one decimal.
pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `a / b` as `0.42×`, or `-` when either side is missing or `b` is zero.
pub fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "-".to_owned(),
    }
}

/// An optional figure printed with `f`, or `-`.
pub fn or_dash(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        let mut s = Samples::new();
        for x in v {
            s.push(*x);
        }
        s
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(samples(&[4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
        assert_eq!(Samples::new().median(), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = samples(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.percentile(99.0), Some(99.0));
        assert_eq!(s.percentile(50.0), Some(50.0));
        assert_eq!(s.percentile(0.0), Some(1.0));
        let few = samples(&[5.0, 1.0, 9.0]);
        assert_eq!(few.percentile(99.0), Some(9.0));
        assert_eq!(few.min(), Some(1.0));
    }

    #[test]
    fn human_figures() {
        assert_eq!(fmt_secs(0.000_85), "850µs");
        assert_eq!(fmt_secs(0.0123), "12.3ms");
        assert_eq!(fmt_secs(0.25), "250ms");
        assert_eq!(fmt_secs(1.416), "1.42s");
        assert_eq!(fmt_bps(16.6e9), "16.60 Gbit/s");
        assert_eq!(fmt_bps(940e6), "940 Mbit/s");
        assert_eq!(fmt_kib(3072), "3.0 MiB");
        assert_eq!(fmt_ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(fmt_ratio(Some(1.0), None), "-");
        assert_eq!(fmt_ratio(Some(1.0), Some(0.0)), "-");
    }
}
