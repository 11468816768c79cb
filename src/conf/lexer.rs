//! Tokenizer for the lighttpd configuration language.
//!
//! The language is free-form: newlines are plain whitespace and `#` starts a
//! comment running to the end of the line. Every token carries the position of
//! its first character so later stages can point at it.

use super::error::{Diag, Span};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A double-quoted string, escapes already applied.
    Str(String),
    Int(i64),
    /// A bare word: a key such as `server.port`, `var.x`, `env.HOME`, or a
    /// keyword (`include`, `else`, ...) which the parser recognises by text.
    Ident(String),
    /// `$HTTP`, `$SERVER`, `$REQUEST_HEADER`, ... (name without the `$`).
    Dollar(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Semi,
    /// `=>`
    Arrow,
    /// `=`
    Assign,
    /// `+=`
    Append,
    /// `:=`
    Force,
    Plus,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `!~`
    NoMatch,
    /// `=^`
    Prefix,
    /// `=$`
    Suffix,
    Eof,
}

impl Tok {
    /// How the token is named in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Str(s) => format!("string \"{}\"", shorten(s)),
            Tok::Int(i) => format!("integer {}", i),
            Tok::Ident(s) => format!("'{}'", s),
            Tok::Dollar(s) => format!("'${}'", s),
            Tok::Eof => "end of file".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Arrow => "=>",
            Tok::Assign => "=",
            Tok::Append => "+=",
            Tok::Force => ":=",
            Tok::Plus => "+",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Match => "=~",
            Tok::NoMatch => "!~",
            Tok::Prefix => "=^",
            Tok::Suffix => "=$",
            _ => "?",
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let mut t: String = s.chars().take(37).collect();
        t.push_str("...");
        t
    } else {
        s.to_string()
    }
}

/// Longest accepted source, so a runaway `include_shell` cannot exhaust memory.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    file: u32,
    line: u32,
    col: u32,
}

impl<'a> Cursor<'a> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn span(&self) -> Span {
        Span::new(self.file, self.line, self.col)
    }
}

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// A string literal that contains a raw line break: legal (lighttpd accepts it), but
/// when something later fails to parse it is most likely a missing closing quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcrossLines {
    /// The opening quote.
    pub start: Span,
    /// The closing quote; `None` when the file ended first.
    pub end: Option<Span>,
}

impl AcrossLines {
    /// Re-aims an error found at or after this string at the string's opening quote,
    /// keeping the original error in the message.
    pub fn blame(self, d: Diag) -> Diag {
        let at = |s: Span| format!("{}:{}", s.line, s.col);
        let after = (d.span.file, d.span.line, d.span.col) >= (self.start.file, self.start.line, self.start.col);
        if !after {
            return d;
        }
        let msg = match self.end {
            Some(end) => format!(
                "unterminated string (missing closing quote?): the string that opens here runs across a line break and closes only at {}; then {}: {}",
                at(end),
                at(d.span),
                d.msg
            ),
            None => "unterminated string: missing closing quote; the string that opens here runs across a line break to the end of the file".to_string(),
        };
        Diag::new(self.start, msg)
    }
}

/// Tokens ending with `Tok::Eof`, and the first string that ran across a line break.
#[derive(Debug)]
pub struct Lexed {
    pub toks: Vec<(Tok, Span)>,
    pub across_lines: Option<AcrossLines>,
}

/// Splits `text` (source number `file`) into tokens, ending with `Tok::Eof`. An error
/// after a string that ran across a line break is reported where that string opened.
pub fn tokenize(file: u32, text: &str) -> Result<Lexed, Diag> {
    let mut across_lines = None;
    match lex_all(file, text, &mut across_lines) {
        Ok(toks) => Ok(Lexed { toks, across_lines }),
        Err(d) => Err(match across_lines {
            Some(a) => a.blame(d),
            None => d,
        }),
    }
}

fn lex_all(file: u32, text: &str, across_lines: &mut Option<AcrossLines>) -> Result<Vec<(Tok, Span)>, Diag> {
    let mut cur = Cursor { chars: text.chars().peekable(), file, line: 1, col: 1 };
    let mut out = Vec::new();
    loop {
        let Some(c) = cur.peek() else {
            out.push((Tok::Eof, cur.span()));
            return Ok(out);
        };
        if c.is_whitespace() {
            cur.bump();
            continue;
        }
        if c == '#' {
            while let Some(c) = cur.peek() {
                if c == '\n' {
                    break;
                }
                cur.bump();
            }
            continue;
        }
        let start = cur.span();
        let tok = match c {
            '"' => {
                let lexed = lex_string(&mut cur, start);
                if cur.line != start.line && across_lines.is_none() {
                    let end = lexed.is_ok().then(|| Span::new(file, cur.line, cur.col.saturating_sub(1)));
                    *across_lines = Some(AcrossLines { start, end });
                }
                lexed?
            }
            '0'..='9' => lex_int(&mut cur, start)?,
            c if is_ident_start(c) => Tok::Ident(take_ident(&mut cur)),
            '$' => {
                cur.bump();
                match cur.peek() {
                    Some(c) if is_ident_start(c) => Tok::Dollar(take_ident(&mut cur)),
                    _ => return Err(Diag::new(start, "expected a condition name after '$' (e.g. $HTTP)")),
                }
            }
            _ => lex_punct(&mut cur, start)?,
        };
        out.push((tok, start));
    }
}

fn take_ident(cur: &mut Cursor<'_>) -> String {
    let mut s = String::new();
    while let Some(c) = cur.peek() {
        if !is_ident_char(c) {
            break;
        }
        s.push(c);
        cur.bump();
    }
    s
}

fn lex_string(cur: &mut Cursor<'_>, start: Span) -> Result<Tok, Diag> {
    cur.bump(); // opening quote
    let mut s = String::new();
    loop {
        match cur.bump() {
            None => return Err(Diag::new(start, "unterminated string: missing closing quote")),
            Some('"') => return Ok(Tok::Str(s)),
            Some('\\') => match cur.peek() {
                Some('"') => {
                    cur.bump();
                    s.push('"');
                }
                Some('\\') => {
                    cur.bump();
                    s.push('\\');
                }
                // Any other backslash is kept verbatim so regexes like "\.ws$" survive.
                _ => s.push('\\'),
            },
            Some(c) => s.push(c),
        }
    }
}

fn lex_int(cur: &mut Cursor<'_>, start: Span) -> Result<Tok, Diag> {
    let mut v: i64 = 0;
    while let Some(c) = cur.peek() {
        let Some(d) = c.to_digit(10) else { break };
        cur.bump();
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d)))
            .ok_or_else(|| Diag::new(start, "integer too large"))?;
    }
    if let Some(c) = cur.peek() {
        if is_ident_char(c) {
            return Err(Diag::new(start, format!("invalid number: unexpected '{}' after digits (quote it as a string)", c)));
        }
    }
    Ok(Tok::Int(v))
}

fn lex_punct(cur: &mut Cursor<'_>, start: Span) -> Result<Tok, Diag> {
    let c = cur.bump().unwrap_or('\0');
    let tok = match c {
        '(' => Tok::LParen,
        ')' => Tok::RParen,
        '{' => Tok::LBrace,
        '}' => Tok::RBrace,
        '[' => Tok::LBracket,
        ']' => Tok::RBracket,
        ',' => Tok::Comma,
        ';' => Tok::Semi,
        '=' => match cur.peek() {
            Some('>') => two(cur, Tok::Arrow),
            Some('=') => two(cur, Tok::Eq),
            Some('~') => two(cur, Tok::Match),
            Some('^') => two(cur, Tok::Prefix),
            Some('$') => two(cur, Tok::Suffix),
            _ => Tok::Assign,
        },
        '+' => match cur.peek() {
            Some('=') => two(cur, Tok::Append),
            _ => Tok::Plus,
        },
        ':' => match cur.peek() {
            Some('=') => two(cur, Tok::Force),
            _ => return Err(Diag::new(start, "unexpected ':' (did you mean ':='?)")),
        },
        '!' => match cur.peek() {
            Some('=') => two(cur, Tok::Ne),
            Some('~') => two(cur, Tok::NoMatch),
            _ => return Err(Diag::new(start, "unexpected '!' (expected '!=' or '!~')")),
        },
        other => return Err(Diag::new(start, format!("unexpected character '{}'", other.escape_debug()))),
    };
    Ok(tok)
}

fn two(cur: &mut Cursor<'_>, t: Tok) -> Tok {
    cur.bump();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(0, s).unwrap().toks.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn token_table() {
        use Tok::*;
        let cases: Vec<(&str, Vec<Tok>)> = vec![
            ("server.port = 80", vec![Ident("server.port".into()), Assign, Int(80), Eof]),
            ("a += \"x\"", vec![Ident("a".into()), Append, Str("x".into()), Eof]),
            ("a := 1", vec![Ident("a".into()), Force, Int(1), Eof]),
            (r#""a\"b\\c\.d""#, vec![Str(r#"a"b\c\.d"#.into()), Eof]),
            ("( \"k\" => 1, )", vec![LParen, Str("k".into()), Arrow, Int(1), Comma, RParen, Eof]),
            ("$HTTP[\"url\"] =~ \"^/\" { }", vec![Dollar("HTTP".into()), LBracket, Str("url".into()), RBracket, Match, Str("^/".into()), LBrace, RBrace, Eof]),
            ("== != =~ !~ =^ =$ + ;", vec![Eq, Ne, Match, NoMatch, Prefix, Suffix, Plus, Semi, Eof]),
            ("# only a comment\n", vec![Eof]),
            ("x = 1 # trailing\ny = 2", vec![Ident("x".into()), Assign, Int(1), Ident("y".into()), Assign, Int(2), Eof]),
            ("\"#not a comment\"", vec![Str("#not a comment".into()), Eof]),
            ("env.HOME var.x_y-z", vec![Ident("env.HOME".into()), Ident("var.x_y-z".into()), Eof]),
            ("\"multi\nline\"", vec![Str("multi\nline".into()), Eof]),
        ];
        for (src, want) in cases {
            assert_eq!(toks(src), want, "source: {:?}", src);
        }
    }

    #[test]
    fn spans_are_line_and_column() {
        let t = tokenize(3, "a = 1\n  b = \"x\"").unwrap().toks;
        let spans: Vec<(u32, u32)> = t.iter().map(|(_, s)| (s.line, s.col)).collect();
        assert_eq!(spans, vec![(1, 1), (1, 3), (1, 5), (2, 3), (2, 5), (2, 7), (2, 10)]);
        assert!(t.iter().all(|(_, s)| s.file == 3));
    }

    #[test]
    fn error_table() {
        let cases = [
            ("x = \"abc", 1, 5, "unterminated string"),
            ("x = 1\n  y = \"a\nb", 2, 7, "unterminated string"),
            ("x = @", 1, 5, "unexpected character '@'"),
            ("x = 99999999999999999999", 1, 5, "integer too large"),
            ("x = 12ab", 1, 5, "invalid number"),
            ("x : 1", 1, 3, "unexpected ':'"),
            ("$ [", 1, 1, "expected a condition name"),
            ("x ! 1", 1, 3, "unexpected '!'"),
        ];
        for (src, line, col, msg) in cases {
            let e = tokenize(0, src).unwrap_err();
            assert_eq!((e.span.line, e.span.col), (line, col), "source {:?}: {}", src, e.msg);
            assert!(e.msg.contains(msg), "source {:?}: {}", src, e.msg);
        }
    }

    /// A missing closing quote is blamed on the line where the string opened, not where
    /// the shifted quotes finally fail; a legal multi-line string is still accepted.
    #[test]
    fn string_across_a_line_break_is_blamed_where_it_opens() {
        let src = "server.port = 8080\nserver.tag = \"abc\nwstunnel.debug = 1\nserver.bind = \"127.0.0.1\"\n";
        let e = tokenize(0, src).err().unwrap_or_else(|| panic!("{src:?} lexed"));
        assert_eq!((e.span.line, e.span.col), (2, 14), "{}", e.msg);
        assert!(e.msg.starts_with("unterminated string (missing closing quote?)"), "{}", e.msg);
        assert!(e.msg.contains("runs across a line break and closes only at 4:15; then 4:16: invalid number"), "{}", e.msg);

        let e = tokenize(0, "a = 1\nb = \"x\n\n").err().unwrap_or_else(|| panic!("lexed"));
        assert_eq!((e.span.line, e.span.col), (2, 5));
        assert!(e.msg.contains("runs across a line break to the end of the file"), "{}", e.msg);

        // An error before the multi-line string keeps its own position.
        let e = tokenize(0, "a = @\nb = \"x\ny\"").err().unwrap_or_else(|| panic!("lexed"));
        assert_eq!((e.span.line, e.span.col), (1, 5));

        let ok = tokenize(0, "a = \"x\ny\"\nb = 1").unwrap_or_else(|e| panic!("{}", e.msg));
        assert_eq!(ok.across_lines.map(|a| (a.start.line, a.end.map(|e| (e.line, e.col)))), Some((1, Some((2, 2)))));
    }
}
