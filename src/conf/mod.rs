//! Configuration: lighttpd's configuration language, as far as wstund needs it.
//!
//! Pipeline: `lexer` (tokens with file:line:col) -> `parser` (AST) ->
//! `eval` (variables, includes, conditionals, `+=`) -> typed [`Config`].
//! Every directive is declared once in `directives`; every default is a
//! `DEFAULT_*` constant in `model`. Directives of lighttpd modules wstund
//! does not implement are accepted and reported in [`Loaded::warnings`], except
//! those whose absence would weaken security (TLS, authentication, ...: `refused`),
//! which are configuration errors.

pub mod accounts;
mod auth;
pub mod command;
mod ast;
mod backend;
mod cidr;
mod cond;
mod config;
mod convert;
mod directives;
mod error;
mod eval;
mod extforward;
mod include;
mod lexer;
mod listen;
mod model;
mod parser;
mod preflight;
mod print;
mod refused;
mod schema;
mod setenv;
mod shell;
pub mod tls;
mod tls_settings;
pub mod tokenfile;
mod value;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod fuzz_tests;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use cond::{Block, Condition, Subject};
pub use setenv::RESERVED_HEADERS;
pub use config::{Config, Loaded};
pub use error::ConfError;
pub use model::*;
pub use preflight::{preflight, preflight_running};
pub use print::print_config;
pub use directives::IMPLEMENTED_MODULES;

/// The modules wstund implements, for `wstund -V`.
pub fn implemented_modules() -> &'static [&'static str] {
    directives::IMPLEMENTED_MODULES
}

/// A directive's name and one-line doc.
pub type DirectiveDoc = (&'static str, &'static str);

/// Every directive wstund acts on, then the options of a `wstunnel.server` backend, for
/// `wstund -V`: read from the directive table, so it cannot drift.
pub fn implemented_directives() -> (Vec<DirectiveDoc>, Vec<DirectiveDoc>) {
    (
        directives::all().map(|d| (d.name, d.doc)).collect(),
        directives::BACKEND_OPTIONS.iter().map(|d| (d.name, d.doc)).collect(),
    )
}

/// Name used in messages for a configuration read from standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Loads a configuration file; `-` reads standard input (relative includes
/// are then resolved against the current directory).
pub fn load_file(path: &Path) -> Result<Loaded, ConfError> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ConfError::whole_file(STDIN_NAME, format!("cannot read: {}", e)))?;
        return eval::load(STDIN_NAME, text, PathBuf::from("."), None);
    }
    let name = path.display().to_string();
    let text = include::read(path).map_err(|e| ConfError::whole_file(&name, e))?;
    let canonical = std::fs::canonicalize(path).ok();
    eval::load(&name, text, parent_dir(path), canonical)
}

/// Loads configuration text; `source_name` is used in messages, and its
/// directory (if it has one) anchors relative includes.
pub fn load_str(source_name: &str, text: &str) -> Result<Loaded, ConfError> {
    eval::load(source_name, text.to_string(), parent_dir(Path::new(source_name)), None)
}

/// [`load_str`] with `include` and `include_shell` refused (each is an error at its
/// statement): for text from an untrusted source, such as the conf fuzz target, which
/// must neither read files nor run commands that a mutated conf names. The daemon never
/// uses it; everything else is evaluated as [`load_str`] does.
pub fn load_str_sealed(source_name: &str, text: &str) -> Result<Loaded, ConfError> {
    eval::load_with(source_name, text.to_string(), parent_dir(Path::new(source_name)), None, eval::Includes::Refused)
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
