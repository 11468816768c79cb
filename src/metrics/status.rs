//! The status pages (lighttpd's mod_status) as one more view of the metrics seam: a
//! [`Snapshot`] collects every source's samples, groups them by what they describe
//! (a route, a backend host, a pool, or the server) and renders them as HTML, JSON,
//! lighttpd's `?auto` text or its statistics `key: value` lines. Every family a source
//! adds shows up here without code of its own.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::family::{Family, Histogram, Kind, Sink};

/// The label that says what a sample describes, with the group it goes to; the first
/// one a sample carries wins. Samples with none describe the server.
const SUBJECTS: [(&str, &str); 3] = [("route", "routes"), ("backend", "backends"), ("pool", "pools")];

/// One value of a subject: a number, or numbers by the sample's other labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Num(u64),
    By(BTreeMap<String, u64>),
}

/// metric (family name without `wstund_`) -> cell.
pub type Metrics = BTreeMap<String, Cell>;

/// Every sample of one reading, grouped: group -> subject -> metrics; the server's own
/// samples under group "server", subject "".
#[derive(Debug, Default)]
pub struct Snapshot {
    pub groups: BTreeMap<&'static str, BTreeMap<String, Metrics>>,
}

impl Snapshot {
    fn put(&mut self, labels: &[(&str, &str)], name: String, value: u64) {
        let subject = SUBJECTS.iter().find_map(|(l, g)| labels.iter().find(|(k, _)| k == l).map(|(_, v)| (*g, *l, *v)));
        let (group, label, who) = subject.unwrap_or(("server", "", ""));
        let rest: Vec<&str> = labels.iter().filter(|(k, _)| *k != label).map(|(_, v)| *v).collect();
        let metrics = self.groups.entry(group).or_default().entry(who.to_string()).or_default();
        if rest.is_empty() {
            metrics.insert(name, Cell::Num(value));
        } else {
            let cell = metrics.entry(name).or_insert_with(|| Cell::By(BTreeMap::new()));
            if let Cell::By(m) = cell {
                *m.entry(rest.join(",")).or_default() += value;
            }
        }
    }

    /// One number of the server group (0 when absent).
    pub fn server(&self, metric: &str) -> u64 {
        match self.groups.get("server").and_then(|g| g.get("")).and_then(|m| m.get(metric)) {
            Some(Cell::Num(n)) => *n,
            Some(Cell::By(m)) => m.values().sum(),
            None => 0,
        }
    }

    /// A metric summed over every subject of a group and every label value.
    pub fn total(&self, group: &str, metric: &str) -> u64 {
        let Some(g) = self.groups.get(group) else { return 0 };
        g.values()
            .filter_map(|m| m.get(metric))
            .map(|c| match c {
                Cell::Num(n) => *n,
                Cell::By(m) => m.values().sum(),
            })
            .sum()
    }
}

fn short(name: &str) -> &str {
    name.strip_prefix("wstund_").unwrap_or(name)
}

impl Sink for Snapshot {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64) {
        self.put(labels, short(family.name).to_string(), value);
    }

    /// A histogram shows as its count and its sum in microseconds.
    fn histogram(&mut self, family: &Family, labels: &[(&str, &str)], h: &Histogram) {
        debug_assert_eq!(family.kind, Kind::Histogram);
        let name = short(family.name);
        self.put(labels, format!("{name}_count"), h.count);
        self.put(labels, format!("{name}_sum_microseconds"), h.sum_us);
    }
}

/// What the server knows beyond its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub version: String,
    pub uptime_secs: u64,
    /// "running" or "stopping".
    pub state: &'static str,
    /// `server.max-connections` less the connections held.
    pub idle_slots: u64,
    /// Requests and payload bytes per second over the last 5 s.
    pub requests_avg5: u64,
    pub traffic_avg5: u64,
    /// One character per connection, by phase (see [`PHASE_CHARS`]).
    pub scoreboard: String,
}

/// The scoreboard's characters, lighttpd's letters where the meaning is close:
/// r = reading the request, h = connecting to the backend, W = tunnel open,
/// C = closing, S = sending an HTTP answer (linger).
pub const PHASE_CHARS: [(&str, char); 5] = [("handshake", 'r'), ("connecting", 'h'), ("open", 'W'), ("closing", 'C'), ("linger", 'S')];

impl Facts {
    fn requests_total(s: &Snapshot) -> u64 {
        s.server("connections_accepted_total")
    }

    fn traffic_total(s: &Snapshot) -> u64 {
        s.total("routes", "payload_bytes_total")
    }
}

/// lighttpd's `?auto` text, with its field names.
pub fn auto(s: &Snapshot, f: &Facts) -> String {
    format!(
        "Total Accesses: {}\nTotal kBytes: {}\nUptime: {}\nBusyServers: {}\nIdleServers: {}\nScoreboard: {}\n",
        Facts::requests_total(s),
        Facts::traffic_total(s) / 1024,
        f.uptime_secs,
        s.server("connections"),
        f.idle_slots,
        f.scoreboard
    )
}

/// lighttpd's statistics page: `key: value` lines, the gateway modules' names for the
/// backend counters (`wstunnel.backend.<host>.connected`, ...).
pub fn statistics(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "wstunnel.active-requests: {}", s.total("routes", "tunnels_open"));
    let leaves = [("connected", "backend_connected_total"), ("died", "backend_died_total"), ("disabled", "backend_disabled_total"), ("load", "backend_load"), ("overloaded", "backend_overloaded_total")];
    if let Some(hosts) = s.groups.get("backends") {
        for (host, m) in hosts {
            for (leaf, metric) in leaves {
                if let Some(Cell::Num(n)) = m.get(metric) {
                    let _ = writeln!(out, "wstunnel.backend.{host}.{leaf}: {n}");
                }
            }
        }
    }
    out
}

/// `?json`: lighttpd's fields first, then every group of the snapshot.
pub fn json(s: &Snapshot, f: &Facts) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "\t\"RequestsTotal\": {},", Facts::requests_total(s));
    let _ = writeln!(out, "\t\"TrafficTotal\": {},", Facts::traffic_total(s));
    let _ = writeln!(out, "\t\"Uptime\": {},", f.uptime_secs);
    let _ = writeln!(out, "\t\"BusyServers\": {},", s.server("connections"));
    let _ = writeln!(out, "\t\"IdleServers\": {},", f.idle_slots);
    let _ = writeln!(out, "\t\"RequestAverage5s\": {},", f.requests_avg5);
    let _ = writeln!(out, "\t\"TrafficAverage5s\": {},", f.traffic_avg5);
    let _ = writeln!(out, "\t\"version\": {},", json_str(&f.version));
    let _ = writeln!(out, "\t\"state\": {},", json_str(f.state));
    let server = s.groups.get("server").and_then(|g| g.get(""));
    out.push_str("\t\"server\": ");
    json_metrics(&mut out, server);
    for (_, group) in SUBJECTS {
        let _ = write!(out, ",\n\t\"{group}\": {{");
        if let Some(subjects) = s.groups.get(group) {
            for (i, (who, m)) in subjects.iter().enumerate() {
                out.push_str(if i == 0 { "\n\t\t" } else { ",\n\t\t" });
                out.push_str(&json_str(who));
                out.push_str(": ");
                json_metrics(&mut out, Some(m));
            }
        }
        out.push('}');
    }
    out.push_str("\n}\n");
    out
}

fn json_metrics(out: &mut String, m: Option<&Metrics>) {
    out.push('{');
    for (i, (name, cell)) in m.into_iter().flatten().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: ", json_str(name));
        match cell {
            Cell::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Cell::By(by) => {
                out.push('{');
                for (j, (k, v)) in by.iter().enumerate() {
                    let _ = write!(out, "{}{}: {v}", if j > 0 { ", " } else { "" }, json_str(k));
                }
                out.push('}');
            }
        }
    }
    out.push('}');
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell_text(c: Option<&Cell>) -> String {
    match c {
        None => String::new(),
        Some(Cell::Num(n)) => n.to_string(),
        Some(Cell::By(m)) => m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
    }
}

const STYLE: &str = "body { font-family: sans-serif; } table { border-collapse: collapse; margin-bottom: 1em; } \
td, th { border: 1px solid #999; padding: 2px 6px; white-space: nowrap; } th { background: #222; color: #fff; } \
td.int { text-align: right; }";

/// The HTML page: well-formed XHTML (it parses as XML), no scripts, no external assets.
pub fn html(s: &Snapshot, f: &Facts) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    let _ = writeln!(out, "<title>Server-Status ({})</title>\n<style type=\"text/css\">{STYLE}</style>\n</head>\n<body>", esc(&f.version));
    let _ = writeln!(out, "<h1>Server-Status ({})</h1>", esc(&f.version));
    out.push_str("<table class=\"status\" id=\"summary\">\n");
    let rows: [(&str, String); 8] = [
        ("State", f.state.to_string()),
        ("Uptime", format!("{} s", f.uptime_secs)),
        ("Requests", Facts::requests_total(s).to_string()),
        ("Traffic", format!("{} bytes", Facts::traffic_total(s))),
        ("Requests (5s average)", format!("{} req/s", f.requests_avg5)),
        ("Traffic (5s average)", format!("{} bytes/s", f.traffic_avg5)),
        ("Connections", s.server("connections").to_string()),
        ("Idle slots", f.idle_slots.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><td>{}</td><td class=\"int\">{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</table>\n");
    let _ = writeln!(out, "<h2>Connections by phase</h2>\n<pre id=\"scoreboard\">{}</pre>", esc(&f.scoreboard));
    let phases = s.groups.get("server").and_then(|g| g.get("")).and_then(|m| m.get("connection_phases"));
    out.push_str("<table class=\"status\" id=\"phases\">\n<tr><th>phase</th><th>char</th><th>connections</th></tr>\n");
    for (phase, c) in PHASE_CHARS {
        let n = match phases {
            Some(Cell::By(m)) => m.get(phase).copied().unwrap_or(0),
            _ => 0,
        };
        let _ = writeln!(out, "<tr><td>{phase}</td><td>{c}</td><td class=\"int\">{n}</td></tr>");
    }
    out.push_str("</table>\n");
    let server = s.groups.get("server").and_then(|g| g.get(""));
    out.push_str("<h2>Server</h2>\n<table class=\"status\" id=\"server\">\n");
    for (name, cell) in server.into_iter().flatten() {
        let _ = writeln!(out, "<tr><td>{}</td><td class=\"int\">{}</td></tr>", esc(name), esc(&cell_text(Some(cell))));
    }
    out.push_str("</table>\n");
    for (label, group) in SUBJECTS {
        let Some(subjects) = s.groups.get(group) else { continue };
        let mut columns: Vec<&String> = subjects.values().flat_map(|m| m.keys()).collect();
        columns.sort_unstable();
        columns.dedup();
        let _ = writeln!(out, "<h2>{}</h2>\n<table class=\"status\" id=\"{group}\">", esc(&format!("{}{}", group[..1].to_uppercase(), &group[1..])));
        let _ = write!(out, "<tr><th>{label}</th>");
        for c in &columns {
            let _ = write!(out, "<th>{}</th>", esc(c));
        }
        out.push_str("</tr>\n");
        for (who, m) in subjects {
            let _ = write!(out, "<tr><td>{}</td>", esc(who));
            for c in &columns {
                let _ = write!(out, "<td class=\"int\">{}</td>", esc(&cell_text(m.get(*c))));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// lighttpd's config page: what this wstund is built with and serves.
pub fn config_html(version: &str, modules: &[&str], routes: &[String]) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    let _ = writeln!(out, "<title>Status</title>\n<style type=\"text/css\">{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>", esc(version));
    out.push_str("<table class=\"status\">\n<tr><th colspan=\"2\">Network Engine</th></tr>\n");
    out.push_str("<tr><td><b>fd-Event-Handler</b></td><td>linux-sysepoll</td></tr>\n");
    out.push_str("<tr><th colspan=\"2\">Config-File-Settings</th></tr>\n");
    let _ = writeln!(out, "<tr><td><b>Loaded Modules</b></td><td>{}</td></tr>", modules.iter().map(|m| esc(m)).collect::<Vec<_>>().join("<br />"));
    let _ = writeln!(out, "<tr><td><b>wstunnel.server</b></td><td>{}</td></tr>", routes.iter().map(|r| esc(r)).collect::<Vec<_>>().join("<br />"));
    out.push_str("</table>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Source;

    const OPEN: Family = Family { name: "wstund_tunnels_open", help: "", kind: Kind::Gauge };
    const HS: Family = Family { name: "wstund_handshakes_total", help: "", kind: Kind::Counter };
    const CONNS: Family = Family { name: "wstund_connections", help: "", kind: Kind::Gauge };
    const LOAD: Family = Family { name: "wstund_backend_load", help: "", kind: Kind::Gauge };

    struct Src;
    impl Source for Src {
        fn expose(&self, out: &mut dyn Sink) {
            out.sample(&CONNS, &[], 3);
            out.sample(&OPEN, &[("route", "/a<b>")], 2);
            out.sample(&HS, &[("route", "/a<b>"), ("status", "101")], 5);
            out.sample(&HS, &[("route", "/a<b>"), ("status", "404")], 1);
            out.sample(&LOAD, &[("backend", "127.0.0.1:9")], 2);
        }
    }

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        Src.expose(&mut s);
        s
    }

    #[test]
    fn samples_group_by_subject() {
        let s = snap();
        assert_eq!(s.server("connections"), 3);
        assert_eq!(s.total("routes", "handshakes_total"), 6);
        let m = &s.groups["routes"]["/a<b>"];
        assert_eq!(m["tunnels_open"], Cell::Num(2));
        assert_eq!(m["handshakes_total"], Cell::By([("101".to_string(), 5), ("404".to_string(), 1)].into()));
        assert_eq!(s.groups["backends"]["127.0.0.1:9"]["backend_load"], Cell::Num(2));
    }

    #[test]
    fn views_use_lighttpds_names_and_escape() {
        let s = snap();
        let f = Facts { version: "wstund/x".into(), uptime_secs: 7, state: "running", idle_slots: 10, scoreboard: "rWW".into(), ..Facts::default() };
        let a = auto(&s, &f);
        assert!(a.starts_with("Total Accesses: 0\nTotal kBytes: 0\nUptime: 7\nBusyServers: 3\nIdleServers: 10\nScoreboard: rWW\n"), "{a}");
        let j = json(&s, &f);
        assert!(j.contains("\"routes\": {\n\t\t\"/a<b>\": {\"handshakes_total\": {\"101\": 5, \"404\": 1}, \"tunnels_open\": 2}}"), "{j}");
        let h = html(&s, &f);
        assert!(h.contains("<td>/a&lt;b&gt;</td>") && !h.contains("/a<b>"), "{h}");
        assert_eq!(statistics(&s), "wstunnel.active-requests: 2\nwstunnel.backend.127.0.0.1:9.load: 2\n");
    }
}
