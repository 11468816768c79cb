//! `wstund -p`: the configuration as loaded, in lighttpd syntax.
//!
//! Includes are expanded, variables substituted and every default written out,
//! so the output is a complete, self-contained configuration: loading it
//! again yields an equal [`Config`]. Ignored directives are not part of the
//! configuration and are not printed.

use super::cond::Block;
use super::directives::{show_server, show_ws, Target, SERVER_DIRECTIVES, WS_DIRECTIVES};
use super::model::Config;

const INDENT: &str = "    ";

pub fn print_config(cfg: &Config) -> String {
    let mut out = String::new();
    out.push_str("# wstund configuration as loaded: includes expanded, variables substituted,\n");
    out.push_str("# defaults written out; directives wstund ignores are left out.\n\n");
    for d in SERVER_DIRECTIVES {
        if let Target::Server(f) = d.target {
            if let Some(v) = show_server(&cfg.server, f, d) {
                line(&mut out, "", d.name, &v);
            }
        }
    }
    out.push('\n');
    for d in WS_DIRECTIVES {
        if let Target::Ws(f) = d.target {
            if let Some(v) = show_ws(&cfg.wstunnel, f, d) {
                line(&mut out, "", d.name, &v);
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
    let value = value.replace('\n', &format!("\n{}", indent));
    out.push_str(&format!("{}{} = {}\n", indent, name, value));
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
        let Some(d) = WS_DIRECTIVES.iter().find(|d| d.target == Target::Ws(*f)) else { continue };
        let value = match b.templated.iter().find(|(tf, _)| tf == f) {
            Some((_, raw)) => Some(raw.to_conf()),
            None => show_ws(&b.ws, *f, d),
        };
        if let Some(v) = value {
            line(out, &indent, d.name, &v);
        }
    }
    for h in chain_heads(blocks, Some(i)) {
        print_chain(out, blocks, h, depth);
    }
}
