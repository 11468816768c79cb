//! Evaluated values: what an expression becomes once variables, `env.*`
//! references and `+` have been applied, before it is typed by a directive.

use std::collections::HashMap;

use super::error::{Diag, Span};

/// Longest string a value may hold. Paths, regexes and environment values in real
/// configurations are far shorter; the cap stops `var.a += var.a` doubling a string
/// until memory runs out.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;
/// Most list entries one value may hold, counted at every depth (a hash of arrays
/// counts its entries and theirs). A large `wstunnel.server` has hundreds.
pub const MAX_VALUE_ELEMENTS: usize = 16 * 1024;
/// Largest footprint (see [`Footprint`]) of one value.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// What one string, integer, boolean or list node costs in a [`Footprint`] besides its
/// text: about what it takes in memory, so a list of many tiny entries is not free.
pub const NODE_BYTES: usize = 64;

/// Up to this many keys merged by one `+` are looked up by scanning; more build an index.
const LINEAR_KEY_SEARCH: usize = 8;

/// The size of a value, kept up to date as values are built so that checking a limit
/// before `+` or a copy costs nothing: `bytes` counts every string and key plus
/// [`NODE_BYTES`] per node, `elements` the list entries at every depth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub bytes: usize,
    pub elements: usize,
}

#[derive(Clone, Debug)]
pub struct Val {
    pub kind: ValKind,
    /// Where the value was written; used for type and range errors.
    pub span: Span,
    /// Computed by [`Val::new`] from `kind`; build a new value rather than changing
    /// `kind` in place.
    footprint: Footprint,
}

/// Values compare by content only: the same configuration printed and parsed
/// again has other positions but must compare equal.
impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        self.kind == other.kind
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValKind {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Option<String>,
    pub key_span: Span,
    pub val: Val,
}

impl Entry {
    /// The entry as counted in its list's [`Footprint`]: one element, its key's
    /// bytes and its value.
    pub fn footprint(&self) -> Footprint {
        let own = Footprint { bytes: self.key.as_ref().map_or(0, String::len), elements: 1 };
        own.plus(self.val.footprint)
    }
}

impl Footprint {
    /// Both together (saturating: a sum past the limits is refused anyway).
    pub fn plus(self, o: Footprint) -> Footprint {
        Footprint { bytes: self.bytes.saturating_add(o.bytes), elements: self.elements.saturating_add(o.elements) }
    }
}

/// A size limit as written in messages and the manual: "16 MiB", "64 KiB".
pub fn size_text(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{} bytes", n)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key == other.key && self.val == other.val
    }
}

impl Val {
    pub fn new(kind: ValKind, span: Span) -> Val {
        let footprint = match &kind {
            ValKind::Str(s) => Footprint { bytes: NODE_BYTES.saturating_add(s.len()), elements: 0 },
            ValKind::Int(_) | ValKind::Bool(_) => Footprint { bytes: NODE_BYTES, elements: 0 },
            ValKind::List(es) => es.iter().fold(Footprint { bytes: NODE_BYTES, elements: 0 }, |acc, e| acc.plus(e.footprint())),
        };
        Val { kind, span, footprint }
    }

    pub fn footprint(&self) -> Footprint {
        self.footprint
    }

    /// Checks that a value of `f` may exist, before it is built; `what` names the
    /// operation in the message ("'+'", "a list").
    pub fn check_size(f: Footprint, span: Span, what: &str) -> Result<(), Diag> {
        if f.elements > MAX_VALUE_ELEMENTS {
            return Err(Diag::new(
                span,
                format!("{} would make a value of {} list entries; a value may hold at most {}", what, f.elements, MAX_VALUE_ELEMENTS),
            ));
        }
        if f.bytes > MAX_VALUE_BYTES {
            return Err(Diag::new(span, format!("{} would make a value of about {} bytes; a value may hold at most {}", what, f.bytes, size_text(MAX_VALUE_BYTES))));
        }
        Ok(())
    }

    /// Checks the length of a string about to be built.
    pub fn check_str_len(len: usize, span: Span, what: &str) -> Result<(), Diag> {
        if len > MAX_STRING_BYTES {
            return Err(Diag::new(span, format!("{} would make a string of {} bytes; strings are limited to {}", what, len, size_text(MAX_STRING_BYTES))));
        }
        Ok(())
    }

    pub fn str(s: &str, span: Span) -> Val {
        Val::new(ValKind::Str(s.to_string()), span)
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            ValKind::Str(_) => "a string",
            ValKind::Int(_) => "an integer",
            ValKind::Bool(_) => "a boolean",
            ValKind::List(e) if e.is_empty() => "an empty list",
            ValKind::List(e) if e.iter().all(|e| e.key.is_some()) => "a hash",
            ValKind::List(_) => "an array",
        }
    }

    /// `self + other` with lighttpd's rules: string concatenation (an integer
    /// on either side is written in decimal), integer addition, list merge.
    ///
    /// Sizes are checked before anything is allocated (see [`MAX_STRING_BYTES`],
    /// [`MAX_VALUE_ELEMENTS`], [`MAX_VALUE_BYTES`]); errors point at `other`.
    pub fn plus(self, other: Val) -> Result<Val, Diag> {
        let span = self.span;
        let at = other.span;
        /// Decimal digits of the longest i64, with its sign.
        const INT_TEXT: usize = 20;
        match (&self.kind, &other.kind) {
            (ValKind::Str(a), ValKind::Str(b)) => Val::check_str_len(a.len().saturating_add(b.len()), at, "'+'")?,
            (ValKind::Str(a), ValKind::Int(_)) | (ValKind::Int(_), ValKind::Str(a)) => {
                Val::check_str_len(a.len().saturating_add(INT_TEXT), at, "'+'")?
            }
            (ValKind::List(_), ValKind::List(_)) => Val::check_size(self.footprint.plus(other.footprint), at, "'+'")?,
            _ => {}
        }
        let kind = match (self.kind, other.kind) {
            (ValKind::Str(mut a), ValKind::Str(b)) => {
                a.push_str(&b);
                ValKind::Str(a)
            }
            (ValKind::Str(mut a), ValKind::Int(b)) => {
                a.push_str(&b.to_string());
                ValKind::Str(a)
            }
            // lighttpd turns the integer into text on either side of a string.
            (ValKind::Int(a), ValKind::Str(b)) => ValKind::Str(format!("{}{}", a, b)),
            (ValKind::Int(a), ValKind::Int(b)) => {
                ValKind::Int(a.checked_add(b).ok_or_else(|| Diag::new(other.span, "integer overflow in '+'"))?)
            }
            (ValKind::List(mut a), ValKind::List(b)) => {
                // Keys of `b` are unique (a literal or an earlier merge), so only `a` is
                // searched; indexed when `b` brings many keys, so merging two big hashes
                // stays linear.
                let keyed = b.iter().filter(|e| e.key.is_some()).count();
                let index: Option<HashMap<&str, usize>> = (keyed > LINEAR_KEY_SEARCH)
                    .then(|| a.iter().enumerate().filter_map(|(i, x)| x.key.as_deref().map(|k| (k, i))).collect());
                let mut added = Vec::with_capacity(b.len());
                let mut grown = self.footprint;
                for e in b {
                    if let Some(k) = &e.key {
                        let old = match &index {
                            Some(ix) => ix.get(k.as_str()).and_then(|&i| a.get(i)),
                            None => a.iter().find(|x| x.key.as_deref() == Some(k.as_str())),
                        };
                        if let Some(old) = old {
                            // As in lighttpd, repeating a key with the same string or
                            // integer value is harmless (e.g. a module listed twice).
                            let same = matches!((&old.val.kind, &e.val.kind),
                                (ValKind::Str(x), ValKind::Str(y)) if x == y)
                                || matches!((&old.val.kind, &e.val.kind), (ValKind::Int(x), ValKind::Int(y)) if x == y);
                            if same {
                                continue;
                            }
                            return Err(Diag::new(e.key_span, format!("duplicate key \"{}\" when merging lists", k)));
                        }
                    }
                    grown = grown.plus(e.footprint());
                    added.push(e);
                }
                drop(index);
                a.extend(added);
                // Not Val::new: summing `a` again would make repeated `+=` quadratic.
                return Ok(Val { kind: ValKind::List(a), span, footprint: grown });
            }
            (a, b) => {
                let (l, r) = (Val::new(a, span), Val::new(b, other.span));
                return Err(Diag::new(other.span, format!("cannot add {} to {}", r.type_name(), l.type_name())));
            }
        };
        Ok(Val::new(kind, span))
    }

    /// True when a string anywhere in the value holds a `%0`..`%9` capture reference.
    pub fn has_captures(&self) -> bool {
        match &self.kind {
            ValKind::Str(s) => has_capture_ref(s),
            ValKind::List(es) => es.iter().any(|e| e.key.as_deref().is_some_and(has_capture_ref) || e.val.has_captures()),
            _ => false,
        }
    }

    /// Replaces `%0`..`%9` in every string with the regex captures of the
    /// enclosing condition (missing groups become empty, as in lighttpd).
    pub fn substitute(&self, caps: &[String]) -> Val {
        let kind = match &self.kind {
            ValKind::Str(s) => ValKind::Str(substitute_str(s, caps)),
            ValKind::List(es) => ValKind::List(
                es.iter()
                    .map(|e| Entry {
                        key: e.key.as_ref().map(|k| substitute_str(k, caps)),
                        key_span: e.key_span,
                        val: e.val.substitute(caps),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        Val::new(kind, self.span)
    }

    /// The value in configuration syntax; parsing it back yields an equal value.
    pub fn to_conf(&self) -> String {
        match &self.kind {
            ValKind::Str(s) => quote(s),
            ValKind::Int(i) => i.to_string(),
            ValKind::Bool(b) => quote(if *b { "enable" } else { "disable" }),
            ValKind::List(es) => {
                if es.is_empty() {
                    return "( )".to_string();
                }
                let items: Vec<String> = es
                    .iter()
                    .map(|e| match &e.key {
                        Some(k) => format!("{} => {}", quote(k), e.val.to_conf()),
                        None => e.val.to_conf(),
                    })
                    .collect();
                format!("( {} )", items.join(", "))
            }
        }
    }
}

fn has_capture_ref(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(2).any(|w| w[0] == b'%' && w[1].is_ascii_digit())
}

pub fn substitute_str(s: &str, caps: &[String]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                chars.next();
                if let Some(cap) = caps.get(d as usize) {
                    out.push_str(cap);
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// A string literal in configuration syntax. The lexer turns `\"` into `"`
/// and `\\` into `\` and keeps any other backslash, so a backslash is
/// doubled only where it would otherwise be read as an escape: regexes such
/// as `"^(\w+)\.org$"` print as written.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' if matches!(chars.peek(), None | Some('"') | Some('\\')) => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: ValKind) -> Val {
        Val::new(kind, Span::default())
    }

    fn list(items: Vec<(Option<&str>, ValKind)>) -> Val {
        v(ValKind::List(
            items
                .into_iter()
                .map(|(k, val)| Entry { key: k.map(str::to_string), key_span: Span::default(), val: v(val) })
                .collect(),
        ))
    }

    #[test]
    fn add_table() {
        use ValKind::*;
        let ok = [
            (Str("a".into()), Str("b".into()), Str("ab".into())),
            (Str("port ".into()), Int(80), Str("port 80".into())),
            (Int(2), Int(3), Int(5)),
            (Int(8), Str("080".into()), Str("8080".into())),
        ];
        for (a, b, want) in ok {
            assert_eq!(v(a).plus(v(b)).unwrap().kind, want);
        }
        let merged = list(vec![(None, Int(1))]).plus(list(vec![(Some("k"), Int(2))])).unwrap();
        assert_eq!(merged, list(vec![(None, Int(1)), (Some("k"), Int(2))]));
        let bad = [
            (Str("a".into()), Bool(true), "cannot add a boolean to a string"),
            (Bool(true), Int(1), "cannot add an integer to a boolean"),
            (Int(i64::MAX), Int(1), "integer overflow"),
        ];
        for (a, b, msg) in bad {
            assert!(v(a).plus(v(b)).unwrap_err().msg.contains(msg));
        }
        let dup = list(vec![(Some("k"), Int(1))]).plus(list(vec![(Some("k"), Int(2))]));
        assert!(dup.unwrap_err().msg.contains("duplicate key \"k\""));
        // The same key with the same value is dropped, as lighttpd does.
        let same = list(vec![(Some("k"), Str("v".into())), (None, Int(1))]).plus(list(vec![(Some("k"), Str("v".into())), (None, Int(1))]));
        assert_eq!(same.unwrap(), list(vec![(Some("k"), Str("v".into())), (None, Int(1)), (None, Int(1))]));
    }

    #[test]
    fn captures() {
        let caps = vec!["all".to_string(), "one".to_string()];
        assert_eq!(substitute_str("x%1y%0%2%%z%", &caps), "xoneyall%%z%");
        assert!(v(ValKind::Str("a%1".into())).has_captures());
        assert!(!v(ValKind::Str("100%".into())).has_captures());
        let l = list(vec![(Some("host"), ValKind::Str("%1.local".into()))]);
        assert!(l.has_captures());
        assert_eq!(l.substitute(&caps), list(vec![(Some("host"), ValKind::Str("one.local".into()))]));
    }

    #[test]
    fn printing_quotes_and_lists() {
        let cases = [("a\"b", r#""a\"b""#), ("a\\c", r#""a\c""#), ("^(\\w+)\\.org$", r#""^(\w+)\.org$""#), ("x\\", r#""x\\""#), ("\\\\b", r#""\\\b""#), ("\\\"", r#""\\\"""#)];
        for (raw, printed) in cases {
            assert_eq!(quote(raw), printed, "{}", raw);
            let toks = crate::conf::lexer::tokenize(0, printed).unwrap().toks;
            assert_eq!(toks[0].0, crate::conf::lexer::Tok::Str(raw.to_string()), "{}", printed);
        }
        let l = list(vec![(None, ValKind::Int(1)), (Some("k"), ValKind::Bool(false))]);
        assert_eq!(l.to_conf(), "( 1, \"k\" => \"disable\" )");
        assert_eq!(list(vec![]).to_conf(), "( )");
    }
}
