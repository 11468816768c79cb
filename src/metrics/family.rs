//! Metric families and the two sides of the seam: a [`Source`] writes samples into a
//! [`Sink`].

/// How a family's value behaves (Prometheus `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (resets at restart).
    Counter,
    /// Goes up and down (open tunnels, load).
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
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

/// Where samples go (the Prometheus text, a status page). A source writes all samples
/// of one family before the next family.
pub trait Sink {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64);
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
}
