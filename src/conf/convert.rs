//! Typing of evaluated values: one [`ConfType`] impl per Rust field type, so
//! every directive of that type accepts and prints values the same way.
//! Errors name the directive and point at the value.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{Spec, Unit};
use super::error::Diag;
use super::model::{AccessFormat, BackendFraming, DeferAccept, BackendMode, Balance, Compression, FileMode, FrameType, InvalidUtf8, LineNewline, Charset};
use super::value::{quote, Val, ValKind};

pub(crate) trait ConfType: Sized {
    fn from_val(v: &Val, d: &Spec) -> Result<Self, Diag>;
    /// The value in configuration syntax, or `None` for "unset" (not printed).
    fn to_conf(&self, d: &Spec) -> Option<String>;
}

fn mismatch(v: &Val, d: &Spec) -> Diag {
    let unit = if d.unit == Unit::None { String::new() } else { format!(" ({})", d.unit.name()) };
    Diag::new(v.span, format!("{}: expected {}{}, got {}", d.name, d.ty, unit, v.type_name()))
}

/// Parses `"64k"`-style sizes: a decimal number with an optional k/m/g suffix.
fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1i64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()?.checked_mul(mult)
}

/// An integer within the directive's range; numeric strings are accepted as
/// lighttpd does, and size suffixes for byte-valued directives.
pub(crate) fn int_of(v: &Val, d: &Spec) -> Result<i64, Diag> {
    let i = match &v.kind {
        ValKind::Int(i) => *i,
        ValKind::Str(s) => {
            let parsed = if d.unit == Unit::Bytes { parse_size(s) } else { s.trim().parse::<i64>().ok() };
            parsed.ok_or_else(|| mismatch(v, d))?
        }
        _ => return Err(mismatch(v, d)),
    };
    if i < d.min || i > d.max {
        return Err(Diag::new(v.span, format!("{}: {} is out of range {}..{}", d.name, i, d.min, d.max)));
    }
    Ok(i)
}

pub(crate) fn bool_of(v: &Val, d: &Spec) -> Result<bool, Diag> {
    match &v.kind {
        ValKind::Bool(b) => Ok(*b),
        ValKind::Int(0) => Ok(false),
        ValKind::Int(1) => Ok(true),
        ValKind::Str(s) => match s.to_ascii_lowercase().as_str() {
            "enable" | "true" | "1" => Ok(true),
            "disable" | "false" | "0" => Ok(false),
            _ => Err(Diag::new(
                v.span,
                format!("{}: expected \"enable\" or \"disable\", got {}", d.name, quote(s)),
            )),
        },
        _ => Err(mismatch(v, d)),
    }
}

pub(crate) fn str_of<'v>(v: &'v Val, d: &Spec) -> Result<&'v str, Diag> {
    match &v.kind {
        ValKind::Str(s) => Ok(s),
        _ => Err(mismatch(v, d)),
    }
}

/// The unkeyed items of an array; a single scalar counts as a one-item array.
pub(crate) fn items_of<'v>(v: &'v Val, d: &Spec) -> Result<Vec<&'v Val>, Diag> {
    match &v.kind {
        ValKind::List(es) => es
            .iter()
            .map(|e| match &e.key {
                None => Ok(&e.val),
                Some(k) => Err(Diag::new(e.key_span, format!("{}: expected {}, but entry has a key {}", d.name, d.ty, quote(k)))),
            })
            .collect(),
        _ => Ok(vec![v]),
    }
}

/// The `key => value` pairs of a hash.
pub(crate) fn pairs_of<'v>(v: &'v Val, d: &Spec) -> Result<Vec<(&'v str, &'v Val)>, Diag> {
    match &v.kind {
        ValKind::List(es) => es
            .iter()
            .map(|e| match &e.key {
                Some(k) => Ok((k.as_str(), &e.val)),
                None => Err(Diag::new(e.val.span, format!("{}: expected {}, but entry has no \"key\" =>", d.name, d.ty))),
            })
            .collect(),
        _ => Err(mismatch(v, d)),
    }
}

fn list_conf(items: Vec<String>) -> String {
    if items.is_empty() {
        "( )".to_string()
    } else {
        format!("( {} )", items.join(", "))
    }
}

macro_rules! int_type {
    ($t:ty) => {
        impl ConfType for $t {
            fn from_val(v: &Val, d: &Spec) -> Result<$t, Diag> {
                let i = int_of(v, d)?;
                <$t>::try_from(i).map_err(|_| Diag::new(v.span, format!("{}: {} is out of range", d.name, i)))
            }
            fn to_conf(&self, _d: &Spec) -> Option<String> {
                Some(self.to_string())
            }
        }
    };
}
int_type!(u16);
int_type!(u32);
int_type!(usize);

impl ConfType for bool {
    fn from_val(v: &Val, d: &Spec) -> Result<bool, Diag> {
        bool_of(v, d)
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(if *self { "enable" } else { "disable" }))
    }
}

impl ConfType for String {
    fn from_val(v: &Val, d: &Spec) -> Result<String, Diag> {
        let s = str_of(v, d)?;
        if !d.allowed.is_empty() && !d.allowed.contains(&s) {
            return Err(Diag::new(v.span, format!("{}: {} is not supported (allowed: {})", d.name, quote(s), d.allowed.join(", "))));
        }
        Ok(s.to_string())
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(self))
    }
}

impl ConfType for DeferAccept {
    fn from_val(v: &Val, d: &Spec) -> Result<DeferAccept, Diag> {
        match &v.kind {
            // lighttpd takes any number here (a count of seconds in older docs) and
            // enables the option for every non-zero one.
            ValKind::Int(n) if *n >= 0 => Ok(DeferAccept(*n != 0)),
            ValKind::Int(_) => Err(Diag::new(v.span, format!("{}: expected \"enable\", \"disable\" or a number >= 0", d.name))),
            _ => bool_of(v, d).map(DeferAccept),
        }
    }
    fn to_conf(&self, d: &Spec) -> Option<String> {
        self.0.to_conf(d)
    }
}

impl ConfType for AccessFormat {
    fn from_val(v: &Val, d: &Spec) -> Result<AccessFormat, Diag> {
        let s = str_of(v, d)?;
        crate::logs::format::Format::parse(s).map_err(|e| Diag::new(v.span, format!("{}: {e}", d.name)))?;
        Ok(AccessFormat(s.to_string()))
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(&self.0))
    }
}

impl ConfType for PathBuf {
    fn from_val(v: &Val, d: &Spec) -> Result<PathBuf, Diag> {
        let s = str_of(v, d)?;
        if s.is_empty() {
            return Err(Diag::new(v.span, format!("{}: path must not be empty", d.name)));
        }
        Ok(PathBuf::from(s))
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(&self.to_string_lossy()))
    }
}

/// An octal string of at most four digits, as lighttpd reads `server.socket-perms`
/// (it takes the string's digits as octal); a leading "0" is optional.
impl ConfType for FileMode {
    fn from_val(v: &Val, d: &Spec) -> Result<FileMode, Diag> {
        let s = str_of(v, d)?;
        let digits = s.trim();
        let octal = !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(m) if octal => Ok(FileMode(m)),
            _ => Err(Diag::new(v.span, format!("{}: expected an octal mode such as \"0660\", got {}", d.name, quote(s)))),
        }
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(quote(&format!("{:04o}", self.0)))
    }
}

impl<T: ConfType> ConfType for Option<T> {
    fn from_val(v: &Val, d: &Spec) -> Result<Option<T>, Diag> {
        T::from_val(v, d).map(Some)
    }
    fn to_conf(&self, d: &Spec) -> Option<String> {
        self.as_ref().and_then(|t| t.to_conf(d))
    }
}

impl ConfType for Duration {
    fn from_val(v: &Val, d: &Spec) -> Result<Duration, Diag> {
        let i = u64::try_from(int_of(v, d)?).map_err(|_| Diag::new(v.span, format!("{}: must not be negative", d.name)))?;
        Ok(match d.unit {
            Unit::Millis => Duration::from_millis(i),
            _ => Duration::from_secs(i),
        })
    }
    fn to_conf(&self, d: &Spec) -> Option<String> {
        Some(match d.unit {
            Unit::Millis => self.as_millis().to_string(),
            _ => self.as_secs().to_string(),
        })
    }
}

impl ConfType for Vec<String> {
    fn from_val(v: &Val, d: &Spec) -> Result<Vec<String>, Diag> {
        items_of(v, d)?.into_iter().map(|i| str_of(i, d).map(str::to_string)).collect()
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(list_conf(self.iter().map(|s| quote(s)).collect()))
    }
}

impl ConfType for Vec<u32> {
    fn from_val(v: &Val, d: &Spec) -> Result<Vec<u32>, Diag> {
        items_of(v, d)?
            .into_iter()
            .map(|item| {
                let n = u32::from_val(item, d)?;
                if !d.allowed.is_empty() && !d.allowed.contains(&n.to_string().as_str()) {
                    return Err(Diag::new(item.span, format!("{}: {} is not supported (allowed: {})", d.name, n, d.allowed.join(", "))));
                }
                Ok(n)
            })
            .collect()
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(list_conf(self.iter().map(|n| n.to_string()).collect()))
    }
}

impl ConfType for Vec<(String, String)> {
    fn from_val(v: &Val, d: &Spec) -> Result<Vec<(String, String)>, Diag> {
        pairs_of(v, d)?.into_iter().map(|(k, val)| Ok((k.to_string(), str_of(val, d)?.to_string()))).collect()
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(list_conf(self.iter().map(|(k, v)| format!("{} => {}", quote(k), quote(v))).collect()))
    }
}

macro_rules! enum_type {
    ($t:ty) => {
        impl ConfType for $t {
            fn from_val(v: &Val, d: &Spec) -> Result<$t, Diag> {
                let s = str_of(v, d)?;
                <$t>::VALUES.iter().find(|(name, _)| *name == s).map(|(_, e)| *e).ok_or_else(|| {
                    let names: Vec<String> = <$t>::VALUES.iter().map(|(n, _)| quote(n)).collect();
                    Diag::new(v.span, format!("{}: unknown value {}; expected one of {}", d.name, quote(s), names.join(", ")))
                })
            }
            fn to_conf(&self, _d: &Spec) -> Option<String> {
                Some(quote(self.as_str()))
            }
        }
    };
}
impl ConfType for super::extforward::Forwarders {
    fn from_val(v: &Val, d: &Spec) -> Result<Self, Diag> {
        let pairs = pairs_of(v, d)?.into_iter().map(|(k, val)| Ok((k, str_of(val, d)?, val.span))).collect::<Result<Vec<_>, Diag>>()?;
        super::extforward::Forwarders::build(d.name, &pairs)
    }
    fn to_conf(&self, _d: &Spec) -> Option<String> {
        Some(super::extforward::Forwarders::to_conf(self))
    }
}

enum_type!(FrameType);
enum_type!(Balance);
enum_type!(Compression);
enum_type!(BackendFraming);
enum_type!(BackendMode);
enum_type!(LineNewline);
enum_type!(InvalidUtf8);
enum_type!(Charset);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::directives::lookup;
    use crate::conf::error::Span;

    fn val(k: ValKind) -> Val {
        Val::new(k, Span::new(0, 2, 7))
    }

    #[test]
    fn integers_ranges_and_sizes() {
        let port = lookup("server.port").unwrap();
        assert_eq!(u16::from_val(&val(ValKind::Int(8080)), port).unwrap(), 8080);
        assert_eq!(u16::from_val(&val(ValKind::Str("81".into())), port).unwrap(), 81);
        let e = u16::from_val(&val(ValKind::Int(70000)), port).unwrap_err();
        assert_eq!(e.msg, "server.port: 70000 is out of range 0..65535");
        assert_eq!((e.span.line, e.span.col), (2, 7));
        let e = u16::from_val(&val(ValKind::Bool(true)), port).unwrap_err();
        assert_eq!(e.msg, "server.port: expected integer, got a boolean");
        let size = lookup("wstunnel.max-frame-size").unwrap();
        for (s, want) in [("64k", 65536usize), ("1M", 1 << 20), ("2g", 2 << 30), ("12", 12)] {
            assert_eq!(usize::from_val(&val(ValKind::Str(s.into())), size).unwrap(), want, "{}", s);
        }
        for bad in ["k", "1x", "-1", "1.5m", ""] {
            assert!(usize::from_val(&val(ValKind::Str(bad.into())), size).is_err(), "{}", bad);
        }
        let ping = lookup("wstunnel.ping-size").unwrap();
        assert_eq!(u32::from_val(&val(ValKind::Int(3)), ping).unwrap_err().msg, "wstunnel.ping-size: 3 is out of range 4..125");
    }

    #[test]
    fn booleans() {
        let d = lookup("wstunnel.tcp-nodelay").unwrap();
        for (k, want) in [
            (ValKind::Str("enable".into()), true),
            (ValKind::Str("Disable".into()), false),
            (ValKind::Str("true".into()), true),
            (ValKind::Str("0".into()), false),
            (ValKind::Int(1), true),
            (ValKind::Bool(false), false),
        ] {
            assert_eq!(bool::from_val(&val(k.clone()), d).unwrap(), want, "{:?}", k);
        }
        assert!(bool::from_val(&val(ValKind::Str("yes".into())), d).unwrap_err().msg.contains("expected \"enable\" or \"disable\""));
        assert!(bool::from_val(&val(ValKind::Int(2)), d).is_err());
    }

    #[test]
    fn enums_lists_and_durations() {
        let ft = lookup("wstunnel.frame-type").unwrap();
        assert_eq!(FrameType::from_val(&val(ValKind::Str("binary".into())), ft).unwrap(), FrameType::Binary);
        let e = FrameType::from_val(&val(ValKind::Str("bin".into())), ft).unwrap_err();
        assert_eq!(e.msg, "wstunnel.frame-type: unknown value \"bin\"; expected one of \"text\", \"binary\"");
        let vers = lookup("wstunnel.versions").unwrap();
        let l = crate::conf::value::Entry { key: None, key_span: Span::default(), val: val(ValKind::Int(7)) };
        assert!(Vec::<u32>::from_val(&val(ValKind::List(vec![l])), vers).unwrap_err().msg.contains("not supported"));
        assert_eq!(Vec::<u32>::from_val(&val(ValKind::Int(8)), vers).unwrap(), vec![8]);
        let t = lookup("wstunnel.open-handshake-timeout").unwrap();
        let d = Duration::from_val(&val(ValKind::Int(250)), t).unwrap();
        assert_eq!(d, Duration::from_millis(250));
        assert_eq!(d.to_conf(t).unwrap(), "250");
        let origins = lookup("wstunnel.origins").unwrap();
        assert!(Vec::<String>::from_val(&val(ValKind::Int(1)), origins).unwrap_err().msg.contains("expected array of strings"));
    }
}
