//! Positions and errors of the configuration loader.
//!
//! Parsing and evaluation report a [`Diag`] (a span into one of the loaded
//! sources plus a message); only the loader, which owns every source text
//! (the main file, includes, `include_shell` output), turns it into a
//! [`ConfError`] carrying the file name, the offending line and a caret, so
//! the inner stages never need to know file names.

use std::fmt;

/// A position in one loaded source: `file` indexes the loader's source table.
/// Lines and columns are 1-based; columns count characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub file: u32,
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub fn new(file: u32, line: u32, col: u32) -> Span {
        Span { file, line, col }
    }
}

/// An error found by the lexer, parser or evaluator, not yet tied to a file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub span: Span,
    pub msg: String,
}

impl Diag {
    pub fn new(span: Span, msg: impl Into<String>) -> Diag {
        Diag { span, msg: msg.into() }
    }
}

/// A configuration error as shown to the operator.
///
/// `Display` prints `file:line:col: message`, then (when the source is known)
/// the offending line and a caret under the column, so `wstund -t` output
/// points straight at the mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError {
    pub file: String,
    /// 0 when the error has no position (e.g. the main file cannot be read).
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// The text of the offending line, without its newline.
    pub source_line: Option<String>,
}

impl ConfError {
    /// An error that is about a whole file (or no file), not a position in it.
    pub fn whole_file(file: &str, message: impl Into<String>) -> ConfError {
        ConfError { file: file.to_string(), line: 0, col: 0, message: message.into(), source_line: None }
    }

    /// The first line of the display form, `file:line:col: message`.
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!("{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(src) = &self.source_line {
            // Keep tabs in the caret prefix so the caret lines up under tabs too.
            let prefix: String = src
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n    {}\n    {}^", src, prefix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_source() {
        let e = ConfError {
            file: "a.conf".into(),
            line: 3,
            col: 5,
            message: "boom".into(),
            source_line: Some("\tx = y".into()),
        };
        assert_eq!(e.to_string(), "a.conf:3:5: boom\n    \tx = y\n    \t   ^");
        assert_eq!(e.headline(), "a.conf:3:5: boom");
        let w = ConfError::whole_file("b.conf", "cannot read");
        assert_eq!(w.to_string(), "b.conf: cannot read");
    }
}
