//! The import graph of `src/` has no cycles, between files or between folders.
//!
//! Read from the source text, no compiler involved: every `crate::` and `super::` path in a
//! file's non-test code (use trees with braces included) is resolved to the file that
//! defines it, following the `pub use` re-exports of a folder's `mod.rs` (a facade: its
//! re-exports are not edges of their own, its other code is). A folder is the unit one
//! level up: an edge between two files of different top-level folders (or top-level
//! files) is an edge between those units. `scripts/check-cycles.sh` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path of every file: `src/a/b.rs` -> ["a", "b"], `src/a/mod.rs` -> ["a"].
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            modules(&path, &p, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if prefix.is_empty() && (stem == "lib" || stem == "main") {
                continue;
            }
            let mut p = prefix.to_vec();
            if stem != "mod" {
                p.push(stem.to_string());
            }
            out.insert(p, fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

/// The code of a file without its test module and without comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim();
        if t == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                if next.trim_start().starts_with("mod ") {
                    break;
                }
            }
        }
        let l = match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        };
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'*') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), i)
}

/// Parses a use tree (or an inline path) at `i`, after its `crate::`/`super::` head;
/// pushes every full path.
fn tree(s: &[u8], mut i: usize, base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = base;
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                i = tree(s, i, path.clone(), out);
                while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    return i + 1;
                }
            }
        }
        let (id, j) = ident_at(s, i);
        if id.is_empty() {
            out.push(path);
            return i;
        }
        path.push(id);
        i = j;
        if s[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every path a file names through `crate::` or `super::`, absolute.
fn paths(me: &[String], is_mod: bool, text: &str) -> Vec<Vec<String>> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let parent: Vec<String> = if is_mod { me.to_vec() } else { me[..me.len().saturating_sub(1)].to_vec() };
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        if boundary && s[i..].starts_with(b"crate::") {
            i = tree(s, i + 7, Vec::new(), &mut out);
        } else if boundary && s[i..].starts_with(b"super::") {
            let mut base = parent.clone();
            if is_mod {
                base.pop();
            }
            i = tree(s, i + 7, base, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// `pub use child::{A, B}` / `pub use child::*` of a folder's mod.rs: name -> child.
fn reexports(me: &[String], text: &str, mods: &BTreeMap<Vec<String>, String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stmt in code(text).split(';') {
        let t = stmt.trim();
        let Some(rest) = t.strip_prefix("pub use ") else { continue };
        let rest = rest.trim_start_matches("self::");
        let mut found = Vec::new();
        tree(rest.as_bytes(), 0, me.to_vec(), &mut found);
        for p in found {
            let child: Vec<String> = p[..me.len() + 1].to_vec();
            if mods.contains_key(&child) && p.len() > me.len() + 1 {
                out.push((p[p.len() - 1].clone(), child));
            }
        }
    }
    out
}

fn resolve(p: &[String], mods: &BTreeMap<Vec<String>, String>, re: &BTreeMap<(Vec<String>, String), Vec<Vec<String>>>) -> Option<Vec<String>> {
    let n = (1..=p.len()).rev().find(|&n| mods.contains_key(&p[..n]))?;
    let m = p[..n].to_vec();
    if let Some(name) = p.get(n) {
        let key = (m.clone(), name.clone());
        let glob = (m.clone(), "*".to_string());
        if let Some(children) = re.get(&key) {
            return resolve(&children[0], mods, re);
        }
        if let Some(children) = re.get(&glob) {
            // `pub use model::*`: the name is the child's if the child defines it.
            for c in children {
                let text = &mods[c];
                let defines = ["struct ", "enum ", "fn ", "const ", "type ", "trait ", "static "]
                    .iter()
                    .any(|k| text.contains(&format!("{}{}", k, name)));
                if defines {
                    return resolve(c, mods, re);
                }
            }
        }
    }
    Some(m)
}

/// File graph and folder graph: module -> the modules it uses.
pub fn graphs() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, BTreeSet<String>>) {
    let mut mods = BTreeMap::new();
    modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut mods);
    let folders: BTreeSet<Vec<String>> = mods.keys().filter(|k| mods.keys().any(|o| o.len() > k.len() && o.starts_with(k))).cloned().collect();
    let mut re: BTreeMap<(Vec<String>, String), Vec<Vec<String>>> = BTreeMap::new();
    for f in &folders {
        for (name, child) in reexports(f, &mods[f], &mods) {
            re.entry((f.clone(), name)).or_default().push(child);
        }
    }
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        let is_mod = folders.contains(m);
        let mut body = code(text);
        if is_mod {
            // A facade's re-exports are not edges of their own.
            body = body.split(';').filter(|s| !s.trim().starts_with("pub use ")).collect::<Vec<_>>().join(";");
        }
        let me = m.join("/");
        files.entry(me.clone()).or_default();
        let unit = m[0].clone();
        units.entry(unit.clone()).or_default();
        for p in paths(m, is_mod, &body) {
            let Some(t) = resolve(&p, &mods, &re) else { continue };
            if t.is_empty() || &t == m {
                continue;
            }
            files.get_mut(&me).map(|s| s.insert(t.join("/")));
            if t[0] != unit {
                units.get_mut(&unit).map(|s| s.insert(t[0].clone()));
            }
        }
    }
    (files, units)
}

/// Strongly connected components with more than one member (Tarjan).
pub fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        idx: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut St<'a>, v: &'a str) {
        let n = st.idx.len();
        st.idx.insert(v, n);
        st.low.insert(v, n);
        st.stack.push(v);
        st.on.insert(v);
        let g = st.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !st.idx.contains_key(w) {
                visit(st, w);
                let l = st.low[w].min(st.low[v]);
                st.low.insert(v, l);
            } else if st.on.contains(w) {
                let l = st.idx[w].min(st.low[v]);
                st.low.insert(v, l);
            }
        }
        if st.low[v] == st.idx[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                st.out.push(comp);
            }
        }
    }
    let mut st = St { g, idx: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !st.idx.contains_key(v.as_str()) {
            visit(&mut st, v);
        }
    }
    st.out
}

#[test]
fn no_import_cycles_between_files_or_folders() {
    let (files, units) = graphs();
    if std::env::var_os("WSTUND_SHOW_GRAPH").is_some() {
        for (k, v) in &units {
            println!("folder {} -> {}", k, v.iter().cloned().collect::<Vec<_>>().join(" "));
        }
        for (k, v) in &files {
            println!("file {} -> {}", k, v.iter().cloned().collect::<Vec<_>>().join(" "));
        }
    }
    let fc = cycles(&files);
    let uc = cycles(&units);
    for c in &fc {
        println!("file cycle: {}", c.join(" <-> "));
    }
    for c in &uc {
        println!("folder cycle: {}", c.join(" <-> "));
    }
    assert!(fc.is_empty() && uc.is_empty(), "import cycles: files {:?}, folders {:?}", fc, uc);
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]);
    let mut found = Vec::new();
    let text = "use crate::a::{b::C, d};\nlet z = super::w::f();";
    found.extend(paths(&["x".into(), "y".into()], false, text));
    assert!(found.contains(&vec!["a".to_string(), "b".to_string(), "C".to_string()]));
    assert!(found.contains(&vec!["a".to_string(), "d".to_string()]));
    assert!(found.contains(&vec!["x".to_string(), "w".to_string(), "f".to_string()]));
}

/// ARCHITECTURE.md's tree names every source file (one line per file), so it stays true
/// as files are added: a file under a folder heading `src/x/` is listed as `  name.rs`.
#[test]
fn architecture_md_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let tree = arch.split("\nsrc/main.rs").nth(1).map(|t| format!("src/main.rs{t}")).expect("the tree starts at src/main.rs");
    let mut named = BTreeSet::new();
    let mut folder = String::new();
    for line in tree.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if line.starts_with("src/") && first.ends_with('/') {
            folder = first.to_string();
        } else if line.starts_with("src/") && first.ends_with(".rs") {
            named.insert(first.to_string());
        } else if line.starts_with("  ") && !line.starts_with("   ") && first.ends_with(".rs") {
            named.insert(format!("{folder}{first}"));
        } else if line.starts_with("tests/") {
            break;
        }
    }
    let mut missing = Vec::new();
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}{name}");
            if e.path().is_dir() {
                walk(&e.path(), &format!("{path}/"), out);
            } else if name.ends_with(".rs") && name != "mod.rs" {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&root.join("src"), "src/", &mut all);
    for f in all {
        if !named.contains(&f) {
            missing.push(f);
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "ARCHITECTURE.md's tree does not name: {missing:?}");
}
