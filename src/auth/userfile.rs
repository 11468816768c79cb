//! Userfiles as mod_authn_file reads them: one `user:secret` entry per line; empty lines
//! and lines starting with `#` are skipped. An `htpasswd` file's secret is a crypt(3)-style
//! hash; a `plain` file's is the password itself (everything after the first `:`).
//!
//! Pure: text in, a table or the first bad line out. `parse_line` is public so a fuzz
//! target can call it.

use std::fmt;

/// Which backend the file belongs to: how the part after the `:` is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `auth.backend.htpasswd.userfile`: hashes.
    Htpasswd,
    /// `auth.backend.plain.userfile`: clear-text passwords.
    Plain,
}

/// What a password is checked against.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `$2a$`, `$2b$`, `$2y$` (htpasswd -B), with its cost.
    Bcrypt { hash: String, cost: u32 },
    /// `$5$` / `$6$` SHA-256/512-crypt (openssl passwd -5 / -6).
    ShaCrypt(String),
    /// `$apr1$` (htpasswd -m, openssl passwd -apr1) and `$1$` MD5-crypt.
    Md5Crypt(String),
    /// A `plain` userfile's password.
    Plain(String),
}

/// Never prints a password or a hash (the conf printer and debug logs may show settings).
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Bcrypt { .. } => "Secret::Bcrypt(..)",
            Secret::ShaCrypt(_) => "Secret::ShaCrypt(..)",
            Secret::Md5Crypt(_) => "Secret::Md5Crypt(..)",
            Secret::Plain(_) => "Secret::Plain(..)",
        })
    }
}

impl Secret {
    /// The stored form, as the credential cache binds an entry to it (a changed
    /// password invalidates what was cached for the old one).
    pub fn stored(&self) -> &str {
        match self {
            Secret::Bcrypt { hash, .. } | Secret::ShaCrypt(hash) | Secret::Md5Crypt(hash) | Secret::Plain(hash) => hash,
        }
    }
}

/// Why one line cannot be used; `Display` is the message after `file:line: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    NoColon,
    EmptyUser,
    EmptySecret,
    /// Unsalted `{SHA}`: refused, a weak hash.
    Sha1,
    /// 13-character traditional DES crypt: refused, a weak hash (8-character passwords).
    Des,
    /// `$2x$` (the buggy pre-2011 bcrypt) or another `$id$` wstund does not verify.
    UnsupportedScheme(String),
    /// A bcrypt or crypt hash whose fields do not parse.
    Malformed(&'static str),
    /// Not any hash format (htpasswd -p writes passwords in clear text).
    UnknownFormat,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REMAKE: &str = "re-create the entry with htpasswd -B (bcrypt) or openssl passwd -6";
        match self {
            LineError::NoColon => write!(f, "expected user:secret"),
            LineError::EmptyUser => write!(f, "empty user name"),
            LineError::EmptySecret => write!(f, "empty password or hash"),
            LineError::Sha1 => write!(f, "{{SHA}} hashes (unsalted SHA-1) are not supported; {REMAKE}"),
            LineError::Des => write!(f, "DES crypt hashes (only 8 password characters count) are not supported; {REMAKE}"),
            LineError::UnsupportedScheme(id) => {
                write!(f, "hash scheme ${id}$ is not supported (supported: $2y$/$2a$/$2b$ bcrypt, $5$/$6$ SHA-crypt, $apr1$/$1$ MD5-crypt); {REMAKE}")
            }
            LineError::Malformed(what) => write!(f, "malformed {what} hash"),
            LineError::UnknownFormat => {
                write!(f, "not a supported hash (bcrypt, SHA-crypt, apr1); a clear-text password belongs in an auth.backend.plain.userfile")
            }
        }
    }
}

/// One line: `Ok(None)` for an empty or comment line, the entry, or why not. A trailing
/// `\r` (a file edited on Windows) is not part of the secret.
pub fn parse_line(line: &str, kind: FileKind) -> Result<Option<(String, Secret)>, LineError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (user, secret) = line.split_once(':').ok_or(LineError::NoColon)?;
    if user.is_empty() {
        return Err(LineError::EmptyUser);
    }
    if secret.is_empty() {
        return Err(LineError::EmptySecret);
    }
    let secret = match kind {
        FileKind::Plain => Secret::Plain(secret.to_string()),
        FileKind::Htpasswd => classify(secret)?,
    };
    Ok(Some((user.to_string(), secret)))
}

/// The hash format of an htpasswd secret, with its fields checked enough that a check
/// at request time cannot fail on the format.
fn classify(h: &str) -> Result<Secret, LineError> {
    if h.starts_with("{SHA}") {
        return Err(LineError::Sha1);
    }
    if let Some(rest) = h.strip_prefix('$') {
        let (id, body) = rest.split_once('$').ok_or(LineError::UnknownFormat)?;
        return match id {
            "2a" | "2b" | "2y" => {
                // $2y$10$ + 22 salt + 31 hash characters.
                let (cost, tail) = body.split_once('$').ok_or(LineError::Malformed("bcrypt"))?;
                let cost: u32 = cost.parse().map_err(|_| LineError::Malformed("bcrypt"))?;
                if !(4..=31).contains(&cost) || tail.len() != 53 || !tail.bytes().all(is_bcrypt64) {
                    return Err(LineError::Malformed("bcrypt"));
                }
                Ok(Secret::Bcrypt { hash: h.to_string(), cost })
            }
            "5" | "6" => {
                // [rounds=N$]salt$hash
                let fields: Vec<&str> = body.split('$').collect();
                let ok = match fields.as_slice() {
                    [salt, hash] => !salt.is_empty() && !hash.is_empty(),
                    [rounds, salt, hash] => rounds.starts_with("rounds=") && !salt.is_empty() && !hash.is_empty(),
                    _ => false,
                };
                if !ok {
                    return Err(LineError::Malformed("SHA-crypt"));
                }
                Ok(Secret::ShaCrypt(h.to_string()))
            }
            "apr1" | "1" => {
                match body.split_once('$') {
                    Some((salt, hash)) if salt.len() <= 8 && hash.len() == 22 && !salt.is_empty() => {}
                    _ => return Err(LineError::Malformed("MD5-crypt")),
                }
                Ok(Secret::Md5Crypt(h.to_string()))
            }
            other => Err(LineError::UnsupportedScheme(other.to_string())),
        };
    }
    if h.len() == 13 && h.bytes().all(is_crypt64) {
        return Err(LineError::Des);
    }
    Err(LineError::UnknownFormat)
}

fn is_bcrypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

fn is_crypt64(b: u8) -> bool {
    is_bcrypt64(b)
}

/// A userfile's entries; the first entry of a user counts (mod_authn_file stops at the
/// first match).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserTable {
    entries: Vec<(String, Secret)>,
}

impl UserTable {
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.entries.iter().find(|(u, _)| u == user).map(|(_, s)| s)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The highest bcrypt cost in the file (what one check may cost the loop).
    pub fn max_bcrypt_cost(&self) -> Option<u32> {
        self.entries.iter().filter_map(|(_, s)| if let Secret::Bcrypt { cost, .. } = s { Some(*cost) } else { None }).max()
    }
}

/// A whole file: the table, or the first bad line's number (from 1) and why.
pub fn parse_userfile(text: &str, kind: FileKind) -> Result<UserTable, (usize, LineError)> {
    let mut entries = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if let Some(e) = parse_line(line, kind).map_err(|e| (i + 1, e))? {
            entries.push(e);
        }
    }
    Ok(UserTable { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuu5ZbBnYzNMxeqXNTwm.6ToFphHCCl1Ba";

    #[test]
    fn line_table() {
        use FileKind::*;
        let ok = |l: &str, k| parse_line(l, k).map(|o| o.map(|(u, s)| (u, s.stored().to_string())));
        assert_eq!(ok("", Htpasswd), Ok(None));
        assert_eq!(ok("# comment", Htpasswd), Ok(None));
        assert_eq!(ok(&format!("alice:{BCRYPT}"), Htpasswd), Ok(Some(("alice".into(), BCRYPT.into()))));
        assert_eq!(ok(&format!("alice:{BCRYPT}\r"), Htpasswd), Ok(Some(("alice".into(), BCRYPT.into()))));
        assert_eq!(ok("bob:$6$salt$abc", Htpasswd), Ok(Some(("bob".into(), "$6$salt$abc".into()))));
        assert_eq!(ok("bob:$5$rounds=6000$salt$abc", Htpasswd).map(|o| o.is_some()), Ok(true));
        assert_eq!(ok("c:$apr1$aB3dE.gH$0123456789012345678901", Htpasswd).map(|o| o.is_some()), Ok(true));
        assert_eq!(ok("p:pa:ss", Plain), Ok(Some(("p".into(), "pa:ss".into()))));
        assert_eq!(parse_line("nocolon", Plain), Err(LineError::NoColon));
        assert_eq!(parse_line(":x", Plain), Err(LineError::EmptyUser));
        assert_eq!(parse_line("u:", Plain), Err(LineError::EmptySecret));
        assert_eq!(parse_line("u:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", Htpasswd), Err(LineError::Sha1));
        assert_eq!(parse_line("u:rqXexS6ZhobKA", Htpasswd), Err(LineError::Des));
        assert_eq!(parse_line("u:secret", Htpasswd), Err(LineError::UnknownFormat));
        assert_eq!(parse_line("u:$2x$05$abcdefghijklmnopqrstuu5ZbBnYzNMxeqXNTwm.6ToFphHCCl1Ba", Htpasswd), Err(LineError::UnsupportedScheme("2x".into())));
        assert_eq!(parse_line("u:$2y$99$abcdefghijklmnopqrstuu5ZbBnYzNMxeqXNTwm.6ToFphHCCl1Ba", Htpasswd), Err(LineError::Malformed("bcrypt")));
        assert_eq!(parse_line("u:$2y$05$short", Htpasswd), Err(LineError::Malformed("bcrypt")));
        assert_eq!(parse_line("u:$6$", Htpasswd), Err(LineError::Malformed("SHA-crypt")));
        assert_eq!(parse_line("u:$apr1$salt$short", Htpasswd), Err(LineError::Malformed("MD5-crypt")));
        assert_eq!(parse_line("u:$", Htpasswd), Err(LineError::UnknownFormat));
    }

    #[test]
    fn file_reports_the_first_bad_line() {
        let t = parse_userfile(&format!("# users\nalice:{BCRYPT}\nalice:$6$s$h\n"), FileKind::Htpasswd).unwrap();
        assert_eq!(t.len(), 2);
        assert!(matches!(t.get("alice"), Some(Secret::Bcrypt { cost: 5, .. })), "the first entry of a user counts");
        assert_eq!(t.max_bcrypt_cost(), Some(5));
        assert!(t.get("bob").is_none());
        assert_eq!(parse_userfile("a:$6$s$h\nb:{SHA}x\n", FileKind::Htpasswd), Err((2, LineError::Sha1)));
        assert!(LineError::Sha1.to_string().contains("htpasswd -B"));
    }

    /// Arbitrary lines (a fuzz target's job in small): every outcome is a value, never a
    /// panic, and an accepted entry's parts come from the line.
    #[test]
    fn arbitrary_lines_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"$:2aby56pr1{}SHA#=.\r/Zz09x";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize;
            let line: String = (0..len).map(|i| char::from(alphabet[((x >> (i % 57)) as usize + i) % alphabet.len()])).collect();
            for kind in [FileKind::Htpasswd, FileKind::Plain] {
                if let Ok(Some((user, secret))) = parse_line(&line, kind) {
                    assert!(line.starts_with(&format!("{user}:")), "{line:?}");
                    assert!(line.contains(secret.stored()), "{line:?}");
                }
            }
        }
    }

    #[test]
    fn debug_hides_secrets() {
        assert_eq!(format!("{:?}", Secret::Plain("hunter2".into())), "Secret::Plain(..)");
    }
}
