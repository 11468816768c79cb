//! Metric families and the two sides of the seam: a [`Source`] writes samples into a
//! [`Sink`].

/// How a family's value behaves (Prometheus `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (resets at restart).
    Counter,
    /// Goes up and down (open tunnels, load).
    Gauge,
    /// Observations counted into fixed buckets ([`Histogram`]).
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: every sample of it shares name, help and kind and differs by
/// labels. Declared as constants next to the code that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// `wstund_...`; counters end in `_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// Upper bounds of the duration buckets, in microseconds: 0.5 ms to 10 s, the span of
/// a backend connect from a local socket to one that waits for connect-timeout.
pub const DURATION_BUCKETS_US: [u64; 14] =
    [500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/// A duration histogram with fixed buckets: a few counters, no allocation, O(1) per
/// observation, so it may sit in a per-host struct on the hot path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations at or below each bound of [`DURATION_BUCKETS_US`] (not cumulative).
    pub buckets: [u64; DURATION_BUCKETS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = DURATION_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// Where samples go (the Prometheus text, a status page). A source writes all samples
/// of one family before the next family.
pub trait Sink {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64);
    /// A histogram family's sample (kind [`Kind::Histogram`]).
    fn histogram(&mut self, family: &Family, labels: &[(&str, &str)], h: &Histogram);
}

/// Something that counts and shows its counters.
pub trait Source {
    fn expose(&self, out: &mut dyn Sink);
}

/// A sample's labels, owned.
#[cfg(test)]
pub type Labels = Vec<(String, String)>;

/// Collects samples in memory, for tests that read one value.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Collected {
    pub samples: Vec<(&'static str, Labels, u64)>,
}

#[cfg(test)]
impl Collected {
    /// The value of the sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.samples
            .iter()
            .find(|(n, ls, _)| *n == name && labels.iter().all(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v)))
            .map(|s| s.2)
    }
}

#[cfg(test)]
impl Sink for Collected {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64) {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.push((family.name, labels, value));
    }
    /// Kept as the observation count, under the family's name.
    fn histogram(&mut self, family: &Family, labels: &[(&str, &str)], h: &Histogram) {
        self.sample(family, labels, h.count);
    }
}
