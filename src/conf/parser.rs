//! Recursive-descent parser: tokens -> [`Stmt`] list.
//!
//! Recursion happens only for nested blocks and nested `( )` lists; both share
//! one depth counter capped at [`MAX_DEPTH`], so hostile input yields an error
//! instead of a stack overflow. `+` chains are parsed iteratively.

use super::ast::{AssignOp, Branch, CondExpr, CondOp, Expr, ListEntry, Stmt};
use super::error::{Diag, Span};
use super::lexer::{tokenize, Tok};

/// Deepest accepted nesting of blocks plus lists.
pub const MAX_DEPTH: usize = 64;

pub fn parse(file: u32, text: &str) -> Result<Vec<Stmt>, Diag> {
    let lexed = tokenize(file, text)?;
    let mut p = Parser { toks: lexed.toks, pos: 0, depth: 0 };
    let parsed = p.statements().and_then(|body| match p.peek() {
        Tok::Eof => Ok(body),
        Tok::RBrace => Err(Diag::new(p.span(), "unexpected '}' without a matching '{'")),
        other => Err(Diag::new(p.span(), format!("unexpected {}", other.describe()))),
    });
    // A missing closing quote shifts every later quote: the error shows up lines
    // further on, but the mistake is where the first multi-line string opened.
    parsed.map_err(|d| match lexed.across_lines {
        Some(a) => a.blame(d),
        None => d,
    })
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        // tokenize always ends with Eof, and we never advance past it.
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }

    fn span(&self) -> Span {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> (Tok, Span) {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Span, Diag> {
        if *self.peek() == want {
            Ok(self.next().1)
        } else {
            Err(Diag::new(self.span(), format!("expected {}, found {}", what, self.peek().describe())))
        }
    }

    fn enter(&mut self, at: Span) -> Result<(), Diag> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diag::new(at, format!("nesting too deep (more than {} levels)", MAX_DEPTH)));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Statements up to (not including) `}` or end of file.
    fn statements(&mut self) -> Result<Vec<Stmt>, Diag> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Tok::Eof | Tok::RBrace => return Ok(out),
                Tok::Semi => {
                    self.next();
                }
                _ => out.push(self.statement()?),
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, Diag> {
        let (tok, span) = self.next();
        match tok {
            Tok::Ident(word) => match word.as_str() {
                "include" => Ok(Stmt::Include { path: self.expr()?, span }),
                "include_shell" => Ok(Stmt::IncludeShell { command: self.expr()?, span }),
                "global" => {
                    let body = self.block()?;
                    Ok(Stmt::Global { body, span })
                }
                "else" | "elseif" | "elsif" => {
                    Err(Diag::new(span, format!("'{}' without a preceding conditional block", word)))
                }
                _ => {
                    let (op_tok, op_span) = self.next();
                    let op = match op_tok {
                        Tok::Assign => AssignOp::Set,
                        Tok::Append => AssignOp::Append,
                        Tok::Force => AssignOp::Force,
                        other => {
                            return Err(Diag::new(
                                op_span,
                                format!("expected '=', '+=' or ':=' after '{}', found {}", word, other.describe()),
                            ))
                        }
                    };
                    let value = self.expr()?;
                    Ok(Stmt::Assign { key: variable_name(word), key_span: span, op, value })
                }
            },
            Tok::Dollar(_) => {
                self.pos -= 1;
                self.chain()
            }
            other => Err(Diag::new(span, format!("expected a directive, a condition or 'include', found {}", other.describe()))),
        }
    }

    /// `{ statements }`
    fn block(&mut self) -> Result<Vec<Stmt>, Diag> {
        let open = self.expect(Tok::LBrace, "'{'")?;
        self.enter(open)?;
        let body = self.statements()?;
        if *self.peek() != Tok::RBrace {
            return Err(Diag::new(open, "unclosed '{' (missing '}')"));
        }
        self.next();
        self.leave();
        Ok(body)
    }

    fn chain(&mut self) -> Result<Stmt, Diag> {
        let span = self.span();
        let cond = self.condition()?;
        let body = self.block()?;
        let mut branches = vec![Branch { cond: Some(cond), body, span }];
        loop {
            let span = self.span();
            let word = match self.peek() {
                Tok::Ident(w) if w == "else" || w == "elseif" || w == "elsif" => w.clone(),
                _ => break,
            };
            self.next();
            let cond = if word == "else" {
                match self.peek() {
                    Tok::LBrace => None,
                    Tok::Ident(w) if w == "if" => {
                        self.next();
                        Some(self.condition()?)
                    }
                    Tok::Dollar(_) => Some(self.condition()?),
                    other => {
                        return Err(Diag::new(
                            self.span(),
                            format!("expected '{{' or a condition after 'else', found {}", other.describe()),
                        ))
                    }
                }
            } else {
                Some(self.condition()?)
            };
            let is_final = cond.is_none();
            let body = self.block()?;
            branches.push(Branch { cond, body, span });
            if is_final {
                break;
            }
        }
        Ok(Stmt::Cond(branches))
    }

    /// `$VAR["field"] op expr`
    fn condition(&mut self) -> Result<CondExpr, Diag> {
        let (tok, var_span) = self.next();
        let var = match tok {
            Tok::Dollar(v) => v,
            other => return Err(Diag::new(var_span, format!("expected a condition such as $HTTP[\"host\"], found {}", other.describe()))),
        };
        self.expect(Tok::LBracket, "'['")?;
        let (tok, field_span) = self.next();
        let field = match tok {
            Tok::Str(s) => s,
            other => return Err(Diag::new(field_span, format!("expected a quoted field name, found {}", other.describe()))),
        };
        self.expect(Tok::RBracket, "']'")?;
        let (tok, op_span) = self.next();
        let op = match tok {
            Tok::Eq => CondOp::Eq,
            Tok::Ne => CondOp::Ne,
            Tok::Match => CondOp::Match,
            Tok::NoMatch => CondOp::NoMatch,
            Tok::Prefix => CondOp::Prefix,
            Tok::Suffix => CondOp::Suffix,
            other => {
                return Err(Diag::new(
                    op_span,
                    format!("expected a comparison (==, !=, =~, !~, =^, =$), found {}", other.describe()),
                ))
            }
        };
        let value = self.expr()?;
        Ok(CondExpr { var, var_span, field, field_span, op, op_span, value })
    }

    fn expr(&mut self) -> Result<Expr, Diag> {
        let first = self.primary()?;
        if *self.peek() != Tok::Plus {
            return Ok(first);
        }
        let span = first.span();
        let mut terms = vec![first];
        while *self.peek() == Tok::Plus {
            self.next();
            terms.push(self.primary()?);
        }
        Ok(Expr::Add(terms, span))
    }

    fn primary(&mut self) -> Result<Expr, Diag> {
        let (tok, span) = self.next();
        match tok {
            Tok::Str(s) => Ok(Expr::Str(s, span)),
            Tok::Int(i) => Ok(Expr::Int(i, span)),
            Tok::Ident(w) => Ok(match w.as_str() {
                "true" | "enable" => Expr::Bool(true, span),
                "false" | "disable" => Expr::Bool(false, span),
                _ => Expr::Ref(variable_name(w), span),
            }),
            Tok::LParen => {
                self.enter(span)?;
                let entries = self.list_entries()?;
                self.leave();
                Ok(Expr::List(entries, span))
            }
            other => Err(Diag::new(span, format!("expected a value, found {}", other.describe()))),
        }
    }

    /// Entries after `(` up to and including `)`; a trailing comma is allowed.
    fn list_entries(&mut self) -> Result<Vec<ListEntry>, Diag> {
        let mut entries = Vec::new();
        loop {
            if *self.peek() == Tok::RParen {
                self.next();
                return Ok(entries);
            }
            let first = self.expr()?;
            let entry = if *self.peek() == Tok::Arrow {
                self.next();
                ListEntry { key: Some(first), value: self.expr()? }
            } else {
                ListEntry { key: None, value: first }
            };
            entries.push(entry);
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RParen => {}
                other => {
                    return Err(Diag::new(self.span(), format!("expected ',' or ')' in list, found {}", other.describe())))
                }
            }
        }
    }
}

/// lighttpd reads a name without a dot as a user variable: `x = 1` is `var.x = 1`.
fn variable_name(word: String) -> String {
    if word.contains('.') {
        word
    } else {
        format!("var.{}", word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(line: u32, col: u32) -> Span {
        Span::new(0, line, col)
    }

    fn one(src: &str) -> Stmt {
        let mut v = parse(0, src).unwrap();
        assert_eq!(v.len(), 1, "{:?}", v);
        v.remove(0)
    }

    #[test]
    fn assignments_and_values() {
        assert_eq!(
            one("server.port = 80"),
            Stmt::Assign { key: "server.port".into(), key_span: s(1, 1), op: AssignOp::Set, value: Expr::Int(80, s(1, 15)) }
        );
        match one("x += \"a\" + var.y + 3") {
            Stmt::Assign { op: AssignOp::Append, value: Expr::Add(terms, _), .. } => {
                assert_eq!(terms.len(), 3);
                assert_eq!(terms[1], Expr::Ref("var.y".into(), s(1, 12)));
            }
            other => panic!("{:?}", other),
        }
        match one("x := ( \"a\", \"k\" => ( 1, 2, ), )") {
            Stmt::Assign { op: AssignOp::Force, value: Expr::List(e, _), .. } => {
                assert_eq!(e.len(), 2);
                assert!(e[0].key.is_none());
                assert_eq!(e[1].key, Some(Expr::Str("k".into(), s(1, 13))));
                assert!(matches!(&e[1].value, Expr::List(inner, _) if inner.len() == 2));
            }
            other => panic!("{:?}", other),
        }
        assert!(matches!(one("x = ()"), Stmt::Assign { value: Expr::List(e, _), .. } if e.is_empty()));
        assert!(matches!(one("x = enable"), Stmt::Assign { value: Expr::Bool(true, _), .. }));
        // lighttpd: a name without a dot is a user variable, assigned or referenced.
        assert!(matches!(one("port = base + 1"), Stmt::Assign { key, value: Expr::Add(t, _), .. }
            if key == "var.port" && t[0] == Expr::Ref("var.base".into(), s(1, 8))));
        assert!(matches!(one("server.port = var.p"), Stmt::Assign { key, value: Expr::Ref(r, _), .. } if key == "server.port" && r == "var.p"));
        assert!(matches!(one("include \"a.conf\""), Stmt::Include { .. }));
        assert!(matches!(one("include_shell \"echo\" + \" x\""), Stmt::IncludeShell { command: Expr::Add(..), .. }));
        assert!(matches!(one("global { a = 1; b = 2 }"), Stmt::Global { body, .. } if body.len() == 2));
    }

    #[test]
    fn conditional_chains() {
        let src = "$HTTP[\"host\"] == \"a\" { x = 1 }\nelse $HTTP[\"host\"] =~ \"b\" { }\nelse if $SERVER[\"socket\"] == \":1\" { } elseif $HTTP[\"url\"] =^ \"/\" {} elsif $HTTP[\"url\"] =$ \"x\" {} else { y = 2 }";
        match one(src) {
            Stmt::Cond(b) => {
                assert_eq!(b.len(), 6);
                let c0 = b[0].cond.as_ref().unwrap();
                assert_eq!((c0.var.as_str(), c0.field.as_str(), c0.op), ("HTTP", "host", CondOp::Eq));
                assert_eq!(c0.op_span, s(1, 15));
                assert_eq!(b[1].cond.as_ref().unwrap().op, CondOp::Match);
                assert_eq!(b[1].span, s(2, 1));
                assert_eq!(b[2].cond.as_ref().unwrap().var, "SERVER");
                assert_eq!(b[3].cond.as_ref().unwrap().op, CondOp::Prefix);
                assert_eq!(b[4].cond.as_ref().unwrap().op, CondOp::Suffix);
                assert!(b[5].cond.is_none());
                assert_eq!(b[5].body.len(), 1);
            }
            other => panic!("{:?}", other),
        }
        // A plain else ends the chain; what follows is a new statement.
        assert_eq!(parse(0, "$HTTP[\"url\"] != \"/\" {} else {} $HTTP[\"url\"] !~ \"/\" {}").unwrap().len(), 2);
        // Nested blocks.
        match one("$HTTP[\"host\"] == \"a\" { $HTTP[\"url\"] =~ \"^/ws\" { wstunnel.debug = 1 } }") {
            Stmt::Cond(b) => assert!(matches!(&b[0].body[0], Stmt::Cond(_))),
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn error_positions() {
        let cases = [
            ("x = ", 1, 5, "expected a value"),
            ("x 1", 1, 3, "expected '=', '+=' or ':='"),
            ("x = (1 2)", 1, 8, "expected ',' or ')'"),
            ("x = (1,", 1, 8, "expected a value"),
            ("\n  }", 2, 3, "unexpected '}'"),
            ("$HTTP[\"host\"] == \"a\" {\n x = 1\n", 1, 22, "unclosed '{'"),
            ("$HTTP[host] == \"a\" {}", 1, 7, "expected a quoted field name"),
            ("$HTTP[\"host\"] = \"a\" {}", 1, 15, "expected a comparison"),
            ("$HTTP[\"host\"] == \"a\"", 1, 21, "expected '{'"),
            ("else { }", 1, 1, "without a preceding conditional"),
            ("$HTTP[\"url\"] == \"/\" {} else x", 1, 29, "expected '{' or a condition"),
            ("= 3", 1, 1, "expected a directive"),
            ("global x", 1, 8, "expected '{'"),
            // A missing closing quote on line 1: the parser fails on line 3, the error
            // points at the string that swallowed the line breaks.
            ("a = \"x\nb = \"\n}", 1, 5, "closes only at 2:5; then 3:1: unexpected '}'"),
        ];
        for (src, line, col, msg) in cases {
            let e = parse(0, src).unwrap_err();
            assert_eq!((e.span.line, e.span.col), (line, col), "{:?}: {}", src, e.msg);
            assert!(e.msg.contains(msg), "{:?}: {}", src, e.msg);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep_list = format!("x = {}{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(0, &deep_list).unwrap_err();
        assert!(e.msg.contains("nesting too deep"), "{}", e.msg);
        assert_eq!(e.span.col, 5 + MAX_DEPTH as u32);
        let deep_blocks = "global {".repeat(5000);
        assert!(parse(0, &deep_blocks).unwrap_err().msg.contains("nesting too deep"));
        let ok = format!("x = {}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(0, &ok).is_ok());
        let long_sum = format!("x = 1{}", " + 1".repeat(100_000));
        assert!(parse(0, &long_sum).is_ok());
    }
}
