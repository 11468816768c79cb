//! Tunnel counters, per route: what the connection state machine reports when a
//! connection is accepted, when its tunnel opens (the 101 went out) and when it ends.
//! A route is the `wstunnel.server` key that matched; connections that never matched
//! one (bad request, 404, a timeout before the request was read) count under `-`. The
//! server's totals are the sums over routes.

use std::collections::BTreeMap;

use crate::metrics::family::{Family, Kind, Sink, Source};

/// The route label of connections no route took.
pub const NO_ROUTE: &str = "-";

const ACCEPTED: Family =
    Family { name: "wstund_connections_accepted_total", help: "Client connections accepted.", kind: Kind::Counter };
const OPENED: Family =
    Family { name: "wstund_tunnels_opened_total", help: "Tunnels opened (101 sent, backend connected).", kind: Kind::Counter };
const OPEN: Family = Family { name: "wstund_tunnels_open", help: "Tunnels open now.", kind: Kind::Gauge };
const HANDSHAKES: Family = Family {
    name: "wstund_handshakes_total",
    help: "Requests answered, by HTTP status: 101 (a tunnel opened) or the error given instead.",
    kind: Kind::Counter,
};
const PAGES: Family = Family {
    name: "wstund_pages_total",
    help: "Requests answered by wstund itself (metrics, health, status pages, static files), by page and HTTP status.",
    kind: Kind::Counter,
};
const CLOSED: Family = Family {
    name: "wstund_tunnels_closed_total",
    help: "Tunnels ended, by WebSocket close code (1006: no close frame crossed).",
    kind: Kind::Counter,
};
const BYTES: Family = Family {
    name: "wstund_payload_bytes_total",
    help: "WebSocket payload bytes carried, by direction.",
    kind: Kind::Counter,
};
const LOST: Family = Family {
    name: "wstund_lost_bytes_total",
    help: "Payload bytes accepted from one side that could not be delivered to the other, by direction.",
    kind: Kind::Counter,
};
const CUT: Family = Family {
    name: "wstund_tunnels_cut_total",
    help: "Tunnels whose delivery a bound cut short, by bound.",
    kind: Kind::Counter,
};

const IN: &str = "client_to_backend";
const OUT: &str = "backend_to_client";

/// What one connection did, reported once when it ends.
#[derive(Debug, Clone, Copy)]
pub struct TunnelEnd<'a> {
    /// The route key, if a route took the request.
    pub route: Option<&'a str>,
    /// The 101 went out.
    pub opened: bool,
    /// The HTTP status it was answered with instead of a 101.
    pub http_status: Option<u16>,
    /// The close code of an opened tunnel.
    pub close_code: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub lost_in: u64,
    pub lost_out: u64,
    /// The bound that cut delivery short (`close-timeout`, `violation`).
    pub cut: Option<&'static str>,
    /// One of wstund's own pages was served (not a handshake).
    pub page: Option<&'static str>,
}

/// A close code as a label value. Codes 3000-4999 are chosen by applications (the
/// client among them), so they are counted by range: a client cannot create series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CodeLabel {
    /// 1000-2999: the protocol's own codes (few, and a peer cannot send most of them).
    Protocol(u16),
    Registered,
    Private,
}

impl CodeLabel {
    fn of(code: u16) -> CodeLabel {
        match code {
            3000..=3999 => CodeLabel::Registered,
            4000..=4999 => CodeLabel::Private,
            c if c < 3000 => CodeLabel::Protocol(c),
            _ => CodeLabel::Private,
        }
    }

    fn text(self) -> String {
        match self {
            CodeLabel::Protocol(c) => c.to_string(),
            CodeLabel::Registered => "3xxx".into(),
            CodeLabel::Private => "4xxx".into(),
        }
    }
}

#[derive(Debug, Default)]
struct Route {
    opened: u64,
    ended: u64,
    http: BTreeMap<u16, u64>,
    closed: BTreeMap<CodeLabel, u64>,
    bytes: [u64; 2],
    lost: [u64; 2],
    cut: BTreeMap<&'static str, u64>,
}

/// Per-route tunnel counters, owned by the server and fed by each connection.
#[derive(Debug, Default)]
pub struct TunnelMetrics {
    accepted: u64,
    /// A small number per route (its slot), so the bytes of open tunnels can be summed
    /// per route at a scrape without a string lookup per connection.
    slots: std::collections::HashMap<String, usize>,
    pages: BTreeMap<(&'static str, u16), u64>,
    routes: BTreeMap<String, Route>,
}

impl TunnelMetrics {
    pub fn new() -> TunnelMetrics {
        TunnelMetrics::default()
    }

    pub fn accepted(&mut self) {
        self.accepted += 1;
    }

    /// The 101 went out on `route`; the route's slot (for [`LiveTunnels`]).
    pub fn opened(&mut self, route: &str) -> usize {
        self.route(route).opened += 1;
        let next = self.slots.len();
        *self.slots.entry(route.to_string()).or_insert(next)
    }

    /// How many slots [`LiveTunnels::bytes`] needs.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// An open tunnel went to a new process (upgrade): it is open no more here, and
    /// its bytes are counted where it ends.
    pub fn moved_out(&mut self, route: &str) {
        self.route(route).ended += 1;
    }

    /// A connection ended.
    pub fn ended(&mut self, end: &TunnelEnd) {
        if let Some(page) = end.page {
            *self.pages.entry((page, end.http_status.unwrap_or(0))).or_default() += 1;
            return;
        }
        let r = self.route(end.route.unwrap_or(NO_ROUTE));
        if end.opened {
            r.ended += 1;
            *r.closed.entry(CodeLabel::of(end.close_code)).or_default() += 1;
        } else if let Some(s) = end.http_status {
            *r.http.entry(s).or_default() += 1;
        }
        r.bytes[0] += end.bytes_in;
        r.bytes[1] += end.bytes_out;
        r.lost[0] += end.lost_in;
        r.lost[1] += end.lost_out;
        if let Some(c) = end.cut {
            *r.cut.entry(c).or_default() += 1;
        }
    }

    /// Connections accepted and payload bytes carried (both ways, ended tunnels), for
    /// the status page's rates.
    pub fn totals(&self) -> (u64, u64) {
        (self.accepted, self.routes.values().map(|r| r.bytes[0] + r.bytes[1]).sum())
    }

    /// Tunnels open now, over all routes.
    pub fn open_total(&self) -> u64 {
        self.routes.values().map(|r| r.opened - r.ended).sum()
    }

    fn route(&mut self, key: &str) -> &mut Route {
        // No allocation once the route has been seen.
        if !self.routes.contains_key(key) {
            self.routes.insert(key.to_string(), Route::default());
        }
        self.routes.get_mut(key).expect("inserted above")
    }
}

/// The counters plus the payload bytes open tunnels have carried so far (by route slot,
/// both directions), so `wstund_payload_bytes_total` moves while a long tunnel runs. A
/// tunnel's bytes move from here to the counters when it ends: the sum never goes back.
pub struct LiveTunnels<'a> {
    pub metrics: &'a TunnelMetrics,
    pub bytes: Vec<[u64; 2]>,
}

impl Source for LiveTunnels<'_> {
    fn expose(&self, out: &mut dyn Sink) {
        self.metrics.expose_with(out, |route| {
            self.metrics.slots.get(route).and_then(|s| self.bytes.get(*s)).copied().unwrap_or([0, 0])
        });
    }
}

impl Source for TunnelMetrics {
    fn expose(&self, out: &mut dyn Sink) {
        self.expose_with(out, |_| [0, 0]);
    }
}

impl TunnelMetrics {
    fn expose_with(&self, out: &mut dyn Sink, live: impl Fn(&str) -> [u64; 2]) {
        out.sample(&ACCEPTED, &[], self.accepted);
        for (k, r) in &self.routes {
            out.sample(&OPENED, &[("route", k)], r.opened);
        }
        for (k, r) in &self.routes {
            out.sample(&OPEN, &[("route", k)], r.opened - r.ended);
        }
        for (k, r) in &self.routes {
            // Statuses in order, 101 among them (a tunnel that opened answered 101).
            let mut opened = Some(r.opened).filter(|n| *n > 0);
            for (status, n) in &r.http {
                if *status > 101 {
                    if let Some(o) = opened.take() {
                        out.sample(&HANDSHAKES, &[("route", k), ("status", "101")], o);
                    }
                }
                out.sample(&HANDSHAKES, &[("route", k), ("status", &status.to_string())], *n);
            }
            if let Some(o) = opened {
                out.sample(&HANDSHAKES, &[("route", k), ("status", "101")], o);
            }
        }
        for (k, r) in &self.routes {
            for (code, n) in &r.closed {
                out.sample(&CLOSED, &[("route", k), ("code", &code.text())], *n);
            }
        }
        for (k, r) in &self.routes {
            let l = live(k);
            out.sample(&BYTES, &[("route", k), ("direction", IN)], r.bytes[0] + l[0]);
            out.sample(&BYTES, &[("route", k), ("direction", OUT)], r.bytes[1] + l[1]);
        }
        for (k, r) in &self.routes {
            out.sample(&LOST, &[("route", k), ("direction", IN)], r.lost[0]);
            out.sample(&LOST, &[("route", k), ("direction", OUT)], r.lost[1]);
        }
        for (k, r) in &self.routes {
            for (bound, n) in &r.cut {
                out.sample(&CUT, &[("route", k), ("bound", bound)], *n);
            }
        }
        for ((page, status), n) in &self.pages {
            out.sample(&PAGES, &[("page", page), ("status", &status.to_string())], *n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Collected;

    fn end(route: Option<&str>) -> TunnelEnd<'_> {
        TunnelEnd {
            route,
            opened: false,
            http_status: None,
            close_code: 1006,
            bytes_in: 0,
            bytes_out: 0,
            lost_in: 0,
            lost_out: 0,
            cut: None,
            page: None,
        }
    }

    #[test]
    fn routes_count_opens_ends_answers_and_bytes() {
        let mut m = TunnelMetrics::new();
        m.accepted();
        m.accepted();
        m.accepted();
        m.opened("/echo");
        m.opened("/echo");
        assert_eq!(m.open_total(), 2);
        m.ended(&TunnelEnd { opened: true, close_code: 1000, bytes_in: 10, bytes_out: 20, lost_in: 3, ..end(Some("/echo")) });
        m.ended(&TunnelEnd { http_status: Some(404), ..end(None) });
        m.ended(&TunnelEnd { opened: true, close_code: 4123, ..end(Some("/echo")) });
        m.opened("/echo");
        m.ended(&TunnelEnd { http_status: Some(200), page: Some("metrics"), ..end(None) });
        assert_eq!(m.open_total(), 1);
        let mut c = Collected::default();
        m.expose(&mut c);
        assert_eq!(c.value("wstund_connections_accepted_total", &[]), Some(3));
        assert_eq!(c.value("wstund_tunnels_opened_total", &[("route", "/echo")]), Some(3));
        assert_eq!(c.value("wstund_handshakes_total", &[("route", "/echo"), ("status", "101")]), Some(3));
        assert_eq!(c.value("wstund_tunnels_closed_total", &[("route", "/echo"), ("code", "4xxx")]), Some(1));
        assert_eq!(c.value("wstund_pages_total", &[("page", "metrics"), ("status", "200")]), Some(1));
        assert_eq!(c.value("wstund_handshakes_total", &[("route", "-"), ("status", "200")]), None);
        assert_eq!(c.value("wstund_tunnels_open", &[("route", "/echo")]), Some(1));
        assert_eq!(c.value("wstund_tunnels_closed_total", &[("route", "/echo"), ("code", "1000")]), Some(1));
        assert_eq!(c.value("wstund_handshakes_total", &[("route", "-"), ("status", "404")]), Some(1));
        assert_eq!(c.value("wstund_payload_bytes_total", &[("route", "/echo"), ("direction", IN)]), Some(10));
        assert_eq!(c.value("wstund_payload_bytes_total", &[("route", "/echo"), ("direction", OUT)]), Some(20));
        assert_eq!(c.value("wstund_lost_bytes_total", &[("route", "/echo"), ("direction", IN)]), Some(3));
    }
}
