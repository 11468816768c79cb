//! What a directive's value must look like: its name, type, range, accepted values,
//! unit and default. `convert.rs` types values against this; `directives.rs` pairs it
//! with the settings field each directive fills.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    None,
    Seconds,
    Millis,
    /// Transformer integers, or strings with a `k`/`m`/`g` suffix (powers of 1024).
    Bytes,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Seconds => "seconds",
            Unit::Millis => "milliseconds",
            Unit::Bytes => "bytes",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    /// Human-readable type, used in the man page and in type errors.
    pub ty: &'static str,
    pub min: i64,
    pub max: i64,
    /// For enumerations (and integer lists): the accepted values.
    pub allowed: &'static [&'static str],
    /// The default as `wstund -p` prints it; `(unset)`-style text when absent. Read by
    /// the unit tests that keep the printer and wstund.conf(5) in step with the table.
    #[cfg_attr(not(test), allow(dead_code))]
    pub default: &'static str,
    pub unit: Unit,
    /// One line of documentation; the same tests check it exists.
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: &'static str,
}
