//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then one `name{label="value"} N` line per sample. Label values are escaped
//! (backslash, double quote, newline) because route keys and backend names come from
//! the conf.

use std::fmt::Write;

use crate::metrics::family::{Family, Sink, Source};

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

impl Sink for Text {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64) {
        if self.last != Some(family.name) {
            let _ = writeln!(self.out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(self.out, "# TYPE {} {}", family.name, family.kind.as_str());
            self.last = Some(family.name);
        }
        self.out.push_str(family.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
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
        let _ = writeln!(self.out, " {value}");
    }
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
