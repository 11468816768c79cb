//! mod_staticfile's decisions, as pure functions: which URL paths may name a file under
//! the document root, the Content-Type from `mimetype.assign`, the validators (ETag,
//! Last-Modified) and what a conditional or Range request gets. The file system is
//! touched by `conn/files.rs` only.

/// Why a URL path cannot name a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// A NUL, a backslash, a `..` or `.` segment: 403, never looked up.
    Forbidden,
}

/// The path's segments below the document root, or why it may not be looked up.
/// `url_path` is the decoded, normalised path (`http::Request::url_path`); this checks
/// again rather than trusting that, so the file server's safety does not depend on the
/// parser's. An empty segment (a `//` or the trailing `/`) is skipped.
pub fn segments(url_path: &str) -> Result<Vec<&str>, PathRefusal> {
    if !url_path.starts_with('/') || url_path.bytes().any(|b| b == 0 || b == b'\\') {
        return Err(PathRefusal::Forbidden);
    }
    let mut out = Vec::new();
    for seg in url_path.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err(PathRefusal::Forbidden),
            // Still encoded after decoding: "%2e%2e" arrives as "..", but a doubly
            // encoded one ("%252e") is a literal name; a segment that still decodes to
            // a dot segment is refused too, in case a later layer decodes again.
            s if s.eq_ignore_ascii_case("%2e") || s.eq_ignore_ascii_case("%2e%2e") || s.eq_ignore_ascii_case(".%2e") || s.eq_ignore_ascii_case("%2e.") => {
                return Err(PathRefusal::Forbidden)
            }
            s => out.push(s),
        }
    }
    Ok(out)
}

/// `static-file.exclude-extensions`: a path ending in one of these is not served.
pub fn excluded(url_path: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| !e.is_empty() && url_path.ends_with(e.as_str()))
}

/// The Content-Type for `name` from `mimetype.assign` (the longest matching suffix; an
/// empty key is the default), else `application/octet-stream`. A `text/*` type without
/// a charset gets none added (lighttpd's behaviour: the conf says what it means).
pub fn mime_type<'a>(name: &str, assign: &'a [(String, String)]) -> &'a str {
    assign
        .iter()
        .filter(|(suffix, _)| name.ends_with(suffix.as_str()))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, t)| t.as_str())
        .unwrap_or("application/octet-stream")
}

/// A strong validator from the inode, size and modification time (lighttpd's default
/// `etag.use-inode`, `-mtime`, `-size`).
pub fn etag(ino: u64, size: u64, mtime: i64) -> String {
    format!("\"{ino:x}-{size:x}-{mtime:x}\"")
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31) (Howard Hinnant's
/// civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IMF-fixdate (RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses an IMF-fixdate; the obsolete forms are not accepted (the condition is then
/// ignored, which RFC 9110 13.1.3 allows).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let rest = s.trim().split_once(", ")?.1;
    let mut it = rest.split(' ');
    let d: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let m = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    let y: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// The file's validators, as the conditional headers are checked against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    pub etag: String,
    pub mtime: i64,
}

/// Whether the client's copy is current (304): `If-None-Match` decides when present
/// (weak comparison, `*` matches); otherwise `If-Modified-Since` (not modified after
/// it). RFC 9110 13.2.2 order.
pub fn not_modified(v: &Validators, if_none_match: Option<&str>, if_modified_since: Option<&str>) -> bool {
    if let Some(inm) = if_none_match {
        let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let ours = strip(&v.etag);
        return inm.split(',').any(|t| t.trim() == "*" || strip(t) == ours);
    }
    if let Some(ims) = if_modified_since.and_then(parse_http_date) {
        return v.mtime <= ims;
    }
    false
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, several ranges, or one that cannot be read: the whole file (200).
    Whole,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// No byte of the file is in the range (416).
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 14.1.2): `a-b`, `a-`, `-n`. Multiple ranges are
/// answered with the whole file, which the RFC allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| if s.bytes().all(|c| c.is_ascii_digit()) && !s.is_empty() { s.parse::<u64>().ok() } else { None };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAsk::Whole,
        (true, false) => match num(b) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part { start: size.saturating_sub(n), end: size - 1 },
            None => RangeAsk::Whole,
        },
        (false, _) => {
            let Some(start) = num(a) else { return RangeAsk::Whole };
            let end = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            let Some(end) = end else { return RangeAsk::Whole };
            if end < start {
                return RangeAsk::Whole;
            }
            if start >= size {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Part { start, end: end.min(size - 1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_table_is_refused_before_any_lookup() {
        let forbidden = ["/../etc/passwd", "/a/../../x", "/./x", "/a\\..\\b", "/a\0b", "/%2e%2e/x", "/%2E%2e/x", "/.%2e/x", "/x/%2e", "relative"];
        for p in forbidden {
            assert_eq!(segments(p), Err(PathRefusal::Forbidden), "{p:?}");
        }
        assert_eq!(segments("/a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(segments("/"), Ok(vec![]));
        assert_eq!(segments("/..a/b.."), Ok(vec!["..a", "b.."]));
    }

    #[test]
    fn mime_types_by_longest_suffix() {
        let a = vec![(".html".to_string(), "text/html".to_string()), (".gz".to_string(), "application/gzip".to_string()), (".tar.gz".to_string(), "application/x-tgz".to_string()), ("".to_string(), "text/plain".to_string())];
        assert_eq!(mime_type("/x/a.html", &a), "text/html");
        assert_eq!(mime_type("/a.tar.gz", &a), "application/x-tgz");
        assert_eq!(mime_type("/a.gz", &a), "application/gzip");
        assert_eq!(mime_type("/README", &a), "text/plain");
        assert_eq!(mime_type("/README", &[]), "application/octet-stream");
    }

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        for t in [0, 784_111_777, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_http_date(&http_date(t)), Some(t));
        }
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn conditionals_prefer_if_none_match() {
        let v = Validators { etag: etag(1, 2, 3), mtime: 1000 };
        assert!(not_modified(&v, Some("\"1-2-3\""), None));
        assert!(not_modified(&v, Some("\"x\", W/\"1-2-3\""), None));
        assert!(not_modified(&v, Some("*"), None));
        assert!(!not_modified(&v, Some("\"x\""), Some(&http_date(2000))), "If-None-Match decides alone");
        assert!(not_modified(&v, None, Some(&http_date(1000))));
        assert!(!not_modified(&v, None, Some(&http_date(999))));
        assert!(!not_modified(&v, None, Some("yesterday")));
        assert!(!not_modified(&v, None, None));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeAsk::Part { start: 0, end: 4 });
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeAsk::Part { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeAsk::Part { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=8-100"), 10), RangeAsk::Part { start: 8, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn exclusions() {
        let ex = vec![".php".to_string(), "~".to_string()];
        assert!(excluded("/a.php", &ex) && excluded("/a~", &ex) && !excluded("/a.html", &ex));
    }
}
