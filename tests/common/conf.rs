//! Builds wstund confs in lighttpd syntax for the tests.
use std::path::Path;

/// Builds a wstund conf in lighttpd syntax. Starts with `server.bind = "127.0.0.1"` and
/// `server.port = 0`; routes become one `wstunnel.server` hash.
#[derive(Clone, Default)]
pub struct Conf {
    lines: Vec<String>,
    routes: Vec<(String, Vec<String>)>,
}

/// One TCP backend entry for `wstunnel.server`.
pub fn be_tcp(port: u16) -> String {
    format!("( \"host\" => \"127.0.0.1\", \"port\" => {port} )")
}

/// One TCP backend entry with extra options, e.g. `"\"connect-timeout\" => 1"`.
pub fn be_tcp_opts(port: u16, opts: &str) -> String {
    format!("( \"host\" => \"127.0.0.1\", \"port\" => {port}, {opts} )")
}

/// One unix-socket backend entry for `wstunnel.server`.
pub fn be_unix(path: &Path) -> String {
    format!("( \"socket\" => \"{}\" )", path.display())
}

impl Conf {
    pub fn new() -> Conf {
        Conf { lines: vec!["server.bind = \"127.0.0.1\"".into(), "server.port = 0".into()], routes: Vec::new() }
    }

    /// A conf with one route `/ws/` to one TCP backend.
    pub fn tcp(port: u16) -> Conf {
        Conf::new().route("/ws/", &[be_tcp(port)])
    }

    /// Map `key` to the given backend entries (see [`be_tcp`], [`be_unix`]).
    pub fn route(mut self, key: &str, backends: &[String]) -> Conf {
        self.routes.push((key.to_string(), backends.to_vec()));
        self
    }

    /// `name = value` with `value` written verbatim (quote strings yourself).
    pub fn set(mut self, name: &str, value: &str) -> Conf {
        self.lines.push(format!("{name} = {value}"));
        self
    }

    /// A raw line appended verbatim.
    pub fn line(mut self, line: &str) -> Conf {
        self.lines.push(line.to_string());
        self
    }

    pub fn render(&self) -> String {
        let mut s = String::from("# written by wstund's test harness\n");
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        if !self.routes.is_empty() {
            s.push_str("wstunnel.server = (\n");
            let n = self.routes.len();
            for (i, (key, bes)) in self.routes.iter().enumerate() {
                s.push_str(&format!("  \"{key}\" => ( {} )", bes.join(", ")));
                s.push_str(if i + 1 < n { ",\n" } else { "\n" });
            }
            s.push_str(")\n");
        }
        s
    }
}

/// The shipped file with `server.port` set to 0 and each `(from, to)` replaced.
pub fn shipped(rel: &str, subs: &[(&str, String)]) -> String {
    let text = std::fs::read_to_string(super::repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut ports = 0;
    let mut out: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server.port") {
                ports += 1;
                "server.port = 0".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(ports, 1, "{rel}: one server.port line");
    for (from, to) in subs {
        assert!(out.contains(from), "{rel} no longer contains {from:?}");
        out = out.replace(from, to);
    }
    out
}
