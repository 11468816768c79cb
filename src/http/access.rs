//! lighttpd's mod_access: which URL paths are answered 403 before anything else.
//!
//! Semantics, checked against lighttpd 1.4.69: the decoded, dot-segment-free URL path
//! (`Request::url_path`, the query left out) is compared by suffix, byte for byte, so
//! case matters (`/a.INC` passes `url.access-deny = ( ".inc" )`). An empty suffix
//! matches every path. When `url.access-allow` is set, it alone decides and
//! `url.access-deny` is not consulted. lighttpd also re-checks after stripping a
//! file's PATH_INFO; wstund serves no files, so there is no PATH_INFO to strip.

/// Whether `url_path` is refused (403) by `url.access-allow` / `url.access-deny`.
pub fn denied(url_path: &str, allow: &[String], deny: &[String]) -> bool {
    let ends_with_one = |list: &[String]| list.iter().any(|s| url_path.ends_with(s.as_str()));
    if !allow.is_empty() {
        return !ends_with_one(allow);
    }
    ends_with_one(deny)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deny_by_suffix_case_sensitive() {
        let deny = list(&["~", ".inc"]);
        for (path, want) in [
            ("/a.inc", true),
            ("/x/b~", true),
            ("/a.INC", false),
            ("/a.inc/", false),
            ("/a.inc;x", false),
            ("/ws", false),
            ("/", false),
        ] {
            assert_eq!(denied(path, &[], &deny), want, "{path}");
        }
    }

    #[test]
    fn empty_suffix_denies_everything() {
        assert!(denied("/", &[], &list(&[""])));
        assert!(denied("/anything", &[], &list(&["x", ""])));
        assert!(!denied("/anything", &[], &[]));
    }

    #[test]
    fn allow_decides_alone_when_set() {
        let allow = list(&[".html", "/ws"]);
        let deny = list(&["a.html"]);
        assert!(!denied("/a.html", &allow, &deny), "deny is not consulted once allow is set");
        assert!(!denied("/app/ws", &allow, &[]));
        assert!(denied("/a.txt", &allow, &[]));
        assert!(denied("/A.HTML", &allow, &[]));
        assert!(!denied("/x", &list(&[""]), &[]), "an empty allow suffix allows everything");
    }
}
