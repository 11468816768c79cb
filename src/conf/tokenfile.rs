//! websockify token files: `token: host:port` or `token: unix_socket:/path` lines, one
//! file or a directory of them (websockify's `--token-plugin TokenFile --token-source`).
//!
//! [`parse_token_line`] is the pure part (one line in, a typed answer out, no I/O) so a
//! fuzz target can call it; [`read_source`] reads a file or directory into a
//! [`TokenMap`], a broken line reported with its file and line number and skipped, so
//! one typo never takes the other tokens down. The loop's re-read policy is in
//! `backend/tokenmap.rs`.
//!
//! The line syntax follows websockify's: surrounding whitespace is stripped; blank
//! lines and lines starting with `#` are skipped; the token ends at the one `:`
//! followed by whitespace; the target is `unix_socket:PATH` or `HOST:PORT` split at
//! the last `:` (`[::1]:5900` for IPv6). wstund checks more than websockify does at
//! read time: the port must be 1-65535 and a socket path absolute, so a bad line is
//! reported once, at read time, instead of failing each client later.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::model::BackendAddr;

/// Largest token file (or directory of them, in all) read; a bigger one is refused as a
/// whole rather than stalling the loop.
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// One line's meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub token: String,
    pub target: BackendAddr,
}

/// Why a line is not a token line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenLineError {
    NotUtf8,
    /// No `: ` (a colon followed by whitespace) between the token and the target.
    NoSeparator,
    /// More than one `: `; websockify refuses such a line too.
    TwoSeparators,
    EmptyToken,
    EmptyTarget,
    /// `host:port` without the `:port`.
    NoPort(String),
    BadPort(String),
    EmptyHost,
    /// `unix_socket:` followed by a relative or empty path.
    RelativeSocket(String),
}

impl fmt::Display for TokenLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenLineError::NotUtf8 => f.write_str("not UTF-8"),
            TokenLineError::NoSeparator => f.write_str("expected \"token: host:port\" or \"token: unix_socket:/path\" (a colon and a space after the token)"),
            TokenLineError::TwoSeparators => f.write_str("more than one \": \" (a colon followed by a space) on the line"),
            TokenLineError::EmptyToken => f.write_str("empty token"),
            TokenLineError::EmptyTarget => f.write_str("no target after the token"),
            TokenLineError::NoPort(t) => write!(f, "target {t:?} has no :port"),
            TokenLineError::BadPort(p) => write!(f, "port {p:?} is not a number from 1 to 65535"),
            TokenLineError::EmptyHost => f.write_str("empty host"),
            TokenLineError::RelativeSocket(p) => write!(f, "unix_socket path {p:?} must be absolute"),
        }
    }
}

/// One line of a token file: `Ok(None)` for a blank or comment line.
pub fn parse_token_line(line: &[u8]) -> Result<Option<TokenEntry>, TokenLineError> {
    let line = std::str::from_utf8(line).map_err(|_| TokenLineError::NotUtf8)?.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut seps = line.char_indices().zip(line.chars().skip(1)).filter(|((_, c), next)| *c == ':' && next.is_whitespace()).map(|((i, _), _)| i);
    let at = seps.next().ok_or(TokenLineError::NoSeparator)?;
    if seps.next().is_some() {
        return Err(TokenLineError::TwoSeparators);
    }
    let token = line[..at].trim();
    if token.is_empty() {
        return Err(TokenLineError::EmptyToken);
    }
    let target = line[at + 1..].trim();
    if target.is_empty() {
        return Err(TokenLineError::EmptyTarget);
    }
    Ok(Some(TokenEntry { token: token.to_string(), target: parse_target(target)? }))
}

/// `unix_socket:/path` or `host:port` (also what `%n` substitution builds).
pub fn parse_target(target: &str) -> Result<BackendAddr, TokenLineError> {
    if let Some(path) = target.strip_prefix("unix_socket:") {
        if !path.starts_with('/') {
            return Err(TokenLineError::RelativeSocket(path.to_string()));
        }
        return Ok(BackendAddr::Unix(PathBuf::from(path)));
    }
    let (host, port) = target.rsplit_once(':').ok_or_else(|| TokenLineError::NoPort(target.to_string()))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(TokenLineError::EmptyHost);
    }
    Ok(BackendAddr::Tcp { host: host.to_string(), port: parse_port(port).ok_or_else(|| TokenLineError::BadPort(port.to_string()))? })
}

/// A port written as decimal digits, 1-65535.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The tokens of one source, and what was wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenMap {
    pub targets: HashMap<String, BackendAddr>,
    /// `file:line: message` for each line skipped (and each token given twice).
    pub problems: Vec<String>,
    /// The files read, in the order read (a directory's in name order).
    pub files: Vec<PathBuf>,
}

/// The files a source stands for: itself, or a directory's regular files in name order
/// (names starting with `.` or ending in `~`, an editor's leftovers, are skipped).
pub fn source_files(source: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = fs::metadata(source)?;
    if !meta.is_dir() {
        return Ok(vec![source.to_path_buf()]);
    }
    let mut out = Vec::new();
    for e in fs::read_dir(source)? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with('.') || n.ends_with('~') {
            continue;
        }
        let p = e.path();
        if fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a token file or a directory of them. An error only when the source itself
/// cannot be read (missing, unreadable, too large); bad lines are `problems`. A file of
/// a directory that vanishes while it is read is skipped.
pub fn read_source(source: &Path) -> std::io::Result<TokenMap> {
    let mut map = TokenMap::default();
    // Token -> (target, index of its file in `map.files`, line).
    let mut found: HashMap<String, (BackendAddr, usize, usize)> = HashMap::new();
    let mut total = 0u64;
    let is_dir = fs::metadata(source)?.is_dir();
    for file in source_files(source)? {
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if is_dir && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += bytes.len() as u64;
        if total > MAX_SOURCE_BYTES {
            return Err(std::io::Error::other(format!("more than {} MiB of token lines", MAX_SOURCE_BYTES >> 20)));
        }
        let fi = map.files.len();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            match parse_token_line(line) {
                Ok(None) => {}
                Ok(Some(e)) => {
                    if let Some((_, f, l)) = found.insert(e.token, (e.target, fi, i + 1)) {
                        let earlier = map.files.get(f).unwrap_or(&file);
                        map.problems.push(format!("{}:{}: token also given at {}:{}; the later line wins", file.display(), i + 1, earlier.display(), l));
                    }
                }
                Err(e) => map.problems.push(format!("{}:{}: {} (line skipped)", file.display(), i + 1, e)),
            }
        }
        map.files.push(file);
    }
    map.targets = found.into_iter().map(|(k, (a, _, _))| (k, a)).collect();
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(h: &str, p: u16) -> BackendAddr {
        BackendAddr::Tcp { host: h.into(), port: p }
    }

    #[test]
    fn lines_as_websockify_reads_them() {
        let ok = |l: &str| parse_token_line(l.as_bytes()).unwrap().unwrap();
        assert_eq!(ok("vm1: 10.0.0.5:5901"), TokenEntry { token: "vm1".into(), target: tcp("10.0.0.5", 5901) });
        assert_eq!(ok("  vm2:\t host.example:5900  \r"), TokenEntry { token: "vm2".into(), target: tcp("host.example", 5900) });
        assert_eq!(ok("v6: [::1]:5900").target, tcp("::1", 5900));
        assert_eq!(ok("s: unix_socket:/run/vnc/a.sock").target, BackendAddr::Unix("/run/vnc/a.sock".into()));
        for skip in ["", "   ", "# comment: x:1", "\t# indented comment"] {
            assert_eq!(parse_token_line(skip.as_bytes()), Ok(None), "{skip:?}");
        }
    }

    #[test]
    fn broken_lines_say_why() {
        let err = |l: &str| parse_token_line(l.as_bytes()).unwrap_err();
        assert_eq!(err("vm1:10.0.0.5:5901"), TokenLineError::NoSeparator);
        assert_eq!(err("a: b: c:1"), TokenLineError::TwoSeparators);
        assert_eq!(err(": host:1"), TokenLineError::EmptyToken);
        assert_eq!(err("a: host"), TokenLineError::NoPort("host".into()));
        assert_eq!(err("a: host:0"), TokenLineError::BadPort("0".into()));
        assert_eq!(err("a: host:65536"), TokenLineError::BadPort("65536".into()));
        assert_eq!(err("a: host:+5"), TokenLineError::BadPort("+5".into()));
        assert_eq!(err("a: :5"), TokenLineError::EmptyHost);
        assert_eq!(err("a: unix_socket:run/x"), TokenLineError::RelativeSocket("run/x".into()));
        assert_eq!(parse_token_line(b"a: h:1\xff"), Err(TokenLineError::NotUtf8));
    }

    #[test]
    fn any_bytes_give_an_answer() {
        let mut x = 0x9e37_79b9_u32;
        for n in 0..3000 {
            let line: Vec<u8> = (0..n % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    b": \t#[]0123456789unix_socket/ab\xff"[(x % 30) as usize]
                })
                .collect();
            let _ = parse_token_line(&line);
        }
    }

    #[test]
    fn a_directory_is_its_files_in_name_order_later_wins() {
        let dir = std::env::temp_dir().join(format!("wstund-tokenfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a"), "t1: h:1\nbad line\n").unwrap();
        fs::write(dir.join("b"), "t1: h:2\nt2: unix_socket:/x\n").unwrap();
        fs::write(dir.join(".hidden"), "t3: h:3\n").unwrap();
        fs::write(dir.join("b~"), "t4: h:4\n").unwrap();
        let m = read_source(&dir).unwrap();
        assert_eq!(m.targets.len(), 2);
        assert_eq!(m.targets["t1"], tcp("h", 2));
        assert_eq!(m.problems.len(), 2, "{:?}", m.problems);
        assert!(m.problems[0].ends_with("/a:2: expected \"token: host:port\" or \"token: unix_socket:/path\" (a colon and a space after the token) (line skipped)"), "{:?}", m.problems);
        assert!(m.problems[1].contains("/b:1: token also given at"), "{:?}", m.problems);
        assert!(read_source(&dir.join("missing")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
