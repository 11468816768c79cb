//! Syntax tree of one configuration source, before evaluation.
//!
//! Every node keeps the span of its first token; the evaluator reports type,
//! range and name errors at these positions.

use super::error::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`: set once; setting the same key again in the same block is an error.
    Set,
    /// `+=`: append to the current value (or to a copy of the enclosing block's).
    Append,
    /// `:=`: overwrite whatever is there.
    Force,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Str(String, Span),
    Int(i64, Span),
    /// Bare `true`/`false`/`enable`/`disable` (lighttpd itself only has strings).
    Bool(bool, Span),
    /// A reference to `var.x`, `env.X` or an already assigned directive.
    Ref(String, Span),
    /// `( ... )`: entries with an optional `key =>`.
    List(Vec<ListEntry>, Span),
    /// `a + b + c`, kept flat (two or more terms) so long chains need no recursion.
    Add(Vec<Expr>, Span),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListEntry {
    pub key: Option<Expr>,
    pub value: Expr,
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Str(_, s) | Expr::Int(_, s) | Expr::Bool(_, s) | Expr::Ref(_, s) | Expr::List(_, s) => *s,
            Expr::Add(_, s) => *s,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CondOp {
    Eq,
    Ne,
    Match,
    NoMatch,
    Prefix,
    Suffix,
}

impl CondOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CondOp::Eq => "==",
            CondOp::Ne => "!=",
            CondOp::Match => "=~",
            CondOp::NoMatch => "!~",
            CondOp::Prefix => "=^",
            CondOp::Suffix => "=$",
        }
    }
}

/// `$HTTP["host"] =~ "pattern"`
#[derive(Clone, Debug, PartialEq)]
pub struct CondExpr {
    /// `HTTP`, `SERVER`, `REQUEST_HEADER`, ...
    pub var: String,
    pub var_span: Span,
    /// The bracketed field, e.g. `host` or a header name.
    pub field: String,
    pub field_span: Span,
    pub op: CondOp,
    pub op_span: Span,
    pub value: Expr,
}

/// One `cond { ... }` or `else ... { ... }` of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// `None` for a final plain `else { }`.
    pub cond: Option<CondExpr>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Assign { key: String, key_span: Span, op: AssignOp, value: Expr },
    Include { path: Expr, span: Span },
    IncludeShell { command: Expr, span: Span },
    Global { body: Vec<Stmt>, span: Span },
    /// `if` plus any `else if`/`else` branches, in order.
    Cond(Vec<Branch>),
}
