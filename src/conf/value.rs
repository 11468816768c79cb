//! Evaluated values: what an expression becomes once variables, `env.*`
//! references and `+` have been applied, before it is typed by a directive.

use super::error::{Diag, Span};

#[derive(Clone, Debug)]
pub struct Val {
    pub kind: ValKind,
    /// Where the value was written; used for type and range errors.
    pub span: Span,
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

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key == other.key && self.val == other.val
    }
}

impl Val {
    pub fn new(kind: ValKind, span: Span) -> Val {
        Val { kind, span }
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
    pub fn plus(self, other: Val) -> Result<Val, Diag> {
        let span = self.span;
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
                for e in b {
                    if let Some(k) = &e.key {
                        if let Some(old) = a.iter().find(|x| x.key.as_deref() == Some(k.as_str())) {
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
                    a.push(e);
                }
                ValKind::List(a)
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
            let toks = crate::conf::lexer::tokenize(0, printed).unwrap();
            assert_eq!(toks[0].0, crate::conf::lexer::Tok::Str(raw.to_string()), "{}", printed);
        }
        let l = list(vec![(None, ValKind::Int(1)), (Some("k"), ValKind::Bool(false))]);
        assert_eq!(l.to_conf(), "( 1, \"k\" => \"disable\" )");
        assert_eq!(list(vec![]).to_conf(), "( )");
    }
}
