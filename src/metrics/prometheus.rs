//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then one `name{label="value"} N` line per sample. Label values are escaped
//! (backslash, double quote, newline) because route keys and backend names come from
//! the conf.

use std::fmt::Write;

use crate::metrics::family::{Family, Histogram, Sink, Source, DURATION_BUCKETS_US};

/// Renders every source, in order, as exposition text.
pub fn render(sources: &[&dyn Source]) -> String {
    let mut text = Text::default();
    for s in sources {
        s.expose(&mut text);
    }
    text.out
}

#[derive(Default)]
struct Text {
    out: String,
    last: Option<&'static str>,
}

impl Text {
    fn header(&mut self, family: &Family) {
        if self.last != Some(family.name) {
            let _ = writeln!(self.out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(self.out, "# TYPE {} {}", family.name, family.kind.as_str());
            self.last = Some(family.name);
        }
    }

    /// `name{labels,le="..."}`; `le` only for histogram buckets.
    fn series(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().chain(le.map(|l| ("le", l)).iter()).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

impl Sink for Text {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64) {
        self.header(family);
        self.series(family.name, "", labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    fn histogram(&mut self, family: &Family, labels: &[(&str, &str)], h: &Histogram) {
        self.header(family);
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS_US.iter().zip(h.buckets.iter()) {
            cumulative += n;
            let le = seconds(*bound);
            self.series(family.name, "_bucket", labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        self.series(family.name, "_bucket", labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.series(family.name, "_sum", labels, None);
        let _ = writeln!(self.out, " {}", seconds(h.sum_us));
        self.series(family.name, "_count", labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }
}

/// Microseconds as seconds, exactly (no float rounding): "0.0005", "2.5", "10".
fn seconds(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:06}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Kind;

    const OPEN: Family = Family { name: "wstund_test_open", help: "Open things.", kind: Kind::Gauge };
    const DONE: Family = Family { name: "wstund_test_done_total", help: "Done things.", kind: Kind::Counter };

    struct Two;
    impl Source for Two {
        fn expose(&self, out: &mut dyn Sink) {
            out.sample(&OPEN, &[("route", "/a\"b\\c\nd")], 2);
            out.sample(&OPEN, &[("route", "/x")], 0);
            out.sample(&DONE, &[], 7);
        }
    }

    const WAIT: Family = Family { name: "wstund_test_wait_seconds", help: "Waits.", kind: Kind::Histogram };

    struct Waits;
    impl Source for Waits {
        fn expose(&self, out: &mut dyn Sink) {
            let mut h = Histogram::default();
            h.observe(std::time::Duration::from_micros(300));
            h.observe(std::time::Duration::from_millis(3));
            h.observe(std::time::Duration::from_secs(20));
            out.histogram(&WAIT, &[("backend", "b")], &h);
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        let text = render(&[&Waits]);
        assert!(text.starts_with("# HELP wstund_test_wait_seconds Waits.\n# TYPE wstund_test_wait_seconds histogram\n"));
        assert!(text.contains("wstund_test_wait_seconds_bucket{backend=\"b\",le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_bucket{backend=\"b\",le=\"0.0025\"} 1\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_bucket{backend=\"b\",le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_bucket{backend=\"b\",le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_bucket{backend=\"b\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_sum{backend=\"b\"} 20.0033\n"), "{text}");
        assert!(text.contains("wstund_test_wait_seconds_count{backend=\"b\"} 3\n"), "{text}");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_000_001), "1.000001");
    }

    #[test]
    fn help_and_type_once_per_family_and_labels_escaped() {
        let text = render(&[&Two]);
        assert_eq!(
            text,
            "# HELP wstund_test_open Open things.\n# TYPE wstund_test_open gauge\n\
             wstund_test_open{route=\"/a\\\"b\\\\c\\nd\"} 2\nwstund_test_open{route=\"/x\"} 0\n\
             # HELP wstund_test_done_total Done things.\n# TYPE wstund_test_done_total counter\n\
             wstund_test_done_total 7\n"
        );
    }
}
