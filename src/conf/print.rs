//! `wstund -p`: the configuration as loaded, in lighttpd syntax.
//!
//! Includes are expanded, variables substituted and every default written out,
//! so the output is a complete, self-contained configuration: loading it
//! again yields an equal [`Config`]. Ignored directives are not part of the
//! configuration and are not printed.

use super::cond::Block;
use super::directives::{show_server, show_tls, show_ws, Field, SERVER_DIRECTIVES, TLS_DIRECTIVES, WS_DIRECTIVES};
use super::tls::TlsSettings;
use super::config::Config;

const INDENT: &str = "    ";

pub fn print_config(cfg: &Config) -> String {
    let mut out = String::new();
    out.push_str("# wstund configuration as loaded: includes expanded, variables substituted,\n");
    out.push_str("# defaults written out; directives wstund ignores are left out.\n\n");
    for d in SERVER_DIRECTIVES {
        if let Field::Server(f) = d.target {
            if let Some(v) = show_server(&cfg.server, f, d) {
                line(&mut out, "", d.name, &v);
            }
        }
    }
    out.push('\n');
    for d in WS_DIRECTIVES {
        if let Field::Ws(f) = d.target {
            if let Some(v) = show_ws(&cfg.wstunnel, f, d) {
                line(&mut out, "", d.name, &v);
            }
        }
    }
    // ssl.* only where they differ from the defaults: a conf without TLS prints none.
    let plain = TlsSettings::default();
    for d in TLS_DIRECTIVES {
        if let Field::Tls(f) = d.target {
            let v = show_tls(&cfg.tls, f, d);
            if v.is_some() && v != show_tls(&plain, f, d) {
                line(&mut out, "", d.name, &v.unwrap_or_default());
            }
        }
    }
    let heads: Vec<usize> = chain_heads(&cfg.blocks, None);
    for h in heads {
        out.push('\n');
        print_chain(&mut out, &cfg.blocks, h, 0);
    }
    out
}

fn line(out: &mut String, indent: &str, name: &str, value: &str) {
    out.push_str(indent);
    out.push_str(name);
    out.push_str(" = ");
    push_indented(out, value, indent);
    out.push('\n');
}

/// Appends a value in conf syntax, indenting the lines of its layout (a multi-line
/// `wstunnel.server`) by `indent` but never a newline inside a string literal: that
/// newline is part of the value, and indenting it would change the value and add
/// another indent on every `-p` round trip.
fn push_indented(out: &mut String, value: &str, indent: &str) {
    let mut in_string = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '"' => in_string = !in_string,
            // Inside a literal the lexer reads \" and \\ as one character each.
            '\\' if in_string => {
                let rest = chars.as_str();
                if rest.starts_with('"') || rest.starts_with('\\') {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
            }
            '\n' if !in_string => out.push_str(indent),
            _ => {}
        }
    }
}

/// First branches of the else-chains directly inside `parent`, in order.
fn chain_heads(blocks: &[Block], parent: Option<usize>) -> Vec<usize> {
    blocks.iter().enumerate().filter(|(_, b)| b.parent == parent && b.prev.is_none()).map(|(i, _)| i).collect()
}

fn print_chain(out: &mut String, blocks: &[Block], head: usize, depth: usize) {
    let indent = INDENT.repeat(depth);
    let mut cur = Some(head);
    let mut first = true;
    while let Some(i) = cur {
        let b = &blocks[i];
        let cond = b.cond.as_ref().map(|c| c.to_conf());
        match (first, cond) {
            (true, Some(c)) => out.push_str(&format!("{}{} {{\n", indent, c)),
            (false, Some(c)) => out.push_str(&format!("{}else {} {{\n", indent, c)),
            // A chain never starts with a plain else; print it as one anyway.
            (_, None) => out.push_str(&format!("{}else {{\n", indent)),
        }
        print_body(out, blocks, i, depth + 1);
        out.push_str(&format!("{}}}\n", indent));
        first = false;
        cur = blocks.iter().position(|x| x.prev == Some(i));
    }
}

fn print_body(out: &mut String, blocks: &[Block], i: usize, depth: usize) {
    let indent = INDENT.repeat(depth);
    let b = &blocks[i];
    for f in &b.set {
        let Some(d) = WS_DIRECTIVES.iter().find(|d| d.target == Field::Ws(*f)) else { continue };
        let value = match b.templated.iter().find(|(tf, _)| tf == f) {
            Some((_, raw)) => Some(raw.to_conf()),
            None => show_ws(&b.ws, *f, d),
        };
        if let Some(v) = value {
            line(out, &indent, d.name, &v);
        }
    }
    for f in &b.tls_set {
        let Some(d) = TLS_DIRECTIVES.iter().find(|d| d.target == Field::Tls(*f)) else { continue };
        if let Some(v) = show_tls(&b.tls, *f, d) {
            line(out, &indent, d.name, &v);
        }
    }
    for h in chain_heads(blocks, Some(i)) {
        print_chain(out, blocks, h, depth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::load_str;

    /// Layout newlines are indented, newlines and escapes inside strings are not.
    #[test]
    fn indent_skips_string_literals() {
        let mut out = String::new();
        push_indented(&mut out, "(\n\"a\nb\\\"\nc\\\\\",\n\"x\\y\n\"\n)", "  ");
        assert_eq!(out, "(\n  \"a\nb\\\"\nc\\\\\",\n  \"x\\y\n\"\n  )");
    }

    /// ssl.* globally, in a socket block and an SNI block, and a backend's TLS options
    /// survive `-p` (TLS off here, so no certificate file is read).
    #[test]
    fn tls_settings_round_trip() {
        let text = "server.port = 0\n\
            ssl.pemfile = \"/x/cert.pem\"\n\
            ssl.openssl.ssl-conf-cmd = ( \"MinProtocol\" => \"TLSv1.3\" )\n\
            wstunnel.server = ( \"/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9, \"tls\" => \"enable\", \"tls-verify\" => \"disable\", \"tls-server-name\" => \"b.test\" ) ) )\n\
            $SERVER[\"socket\"] == \":8443\" {\n\
              ssl.verifyclient.depth = 2\n\
              ssl.verifyclient.username = \"SSL_CLIENT_S_DN_CN\"\n\
              $HTTP[\"host\"] == \"a.test\" { ssl.pemfile = \"/x/a.pem\" }\n\
            }\n";
        let first = load_str("t.conf", text).unwrap().config;
        let p1 = print_config(&first);
        let second = load_str("p1.conf", &p1).unwrap_or_else(|e| panic!("{e}\n{p1}")).config;
        assert_eq!(second, first, "-p output loads to another configuration:\n{p1}");
        assert_eq!(print_config(&second), p1);
        for want in ["ssl.pemfile = \"/x/cert.pem\"", "ssl.verifyclient.depth = 2", "ssl.pemfile = \"/x/a.pem\"", "\"tls-server-name\" => \"b.test\""] {
            assert!(p1.contains(want), "{want} missing:\n{p1}");
        }
        assert_eq!(first.listen_tls[1].sni.len(), 1);
        assert_eq!(first.listen_tls[1].settings.verify_depth, 2);
        assert_eq!(first.listen_tls[0].settings.verify_depth, 9, "the socket block's settings stay in it");
    }

    /// `-p` output loads to the same configuration and prints byte-identically, with
    /// multi-line strings inside a conditional and inside a nested one.
    #[test]
    fn multi_line_strings_in_blocks_round_trip() {
        let text = "server.port = 0\n\
            $HTTP[\"url\"] =^ \"/a\" {\n\
              wstunnel.server = ( \"/a\" => ( ( \"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\",\n\
                \"bin-environment\" => ( \"X\" => \"line1\n  line2\\\"\nline3\" ) ) ) )\n\
              $HTTP[\"host\"] == \"h\" {\n\
                wstunnel.server = ( \"/b\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9, \"check-send\" => \"l1\nl2\n\" ) ) )\n\
              }\n\
            }\n";
        let first = load_str("a.conf", text).unwrap().config;
        let p1 = print_config(&first);
        let second = load_str("p1.conf", &p1).unwrap().config;
        assert_eq!(second, first, "-p output loads to another configuration:\n{p1}");
        let p2 = print_config(&second);
        assert_eq!(p2, p1, "-p is not a fixed point");
        assert!(p1.contains("\"line1\n  line2\\\"\nline3\""), "{p1}");
        assert!(p1.contains("\"l1\nl2\n\""), "{p1}");
    }
}
