//! File side of `include`: path and glob resolution and reading (the command of an
//! `include_shell` is run by [`super::shell`]). The evaluator decides what to do with
//! the text.

use std::fs;
use std::path::{Path, PathBuf};

use super::lexer::MAX_SOURCE_BYTES;

/// The files an `include` argument names, relative to `base` (the including
/// file's directory). `*` and `?` in the last path component make it a glob:
/// matches are sorted, hidden files are skipped unless the pattern starts with
/// `.`, and no match is not an error. A plain path must exist.
pub(crate) fn resolve(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
    let last = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !last.contains(['*', '?']) {
        if path.is_file() {
            return Ok(vec![path]);
        }
        if path.exists() {
            return Err(format!("include path {} is not a file", path.display()));
        }
        return Err(format!("include file not found: {}", path.display()));
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read include directory {}: {}", dir.display(), e)),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.') || last.starts_with('.')) && glob_match(&last, &name)
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Shell-style matching of one path component: `*` any run, `?` one character.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads an included file, refusing absurdly large ones.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {}: {}", path.display(), e))?;
    if meta.len() > MAX_SOURCE_BYTES as u64 {
        return Err(format!("{} is larger than {} bytes", path.display(), MAX_SOURCE_BYTES));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("*.conf", "a.conf", true),
            ("*.conf", "a.conf.bak", false),
            ("*", "", true),
            ("?.conf", "ab.conf", false),
            ("??-*.conf", "10-wstunnel.conf", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("ex?ct", "exäct", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{} vs {}", p, n);
        }
    }

    #[test]
    fn resolve_globs_and_paths() {
        let dir = std::env::temp_dir().join(format!("wstund-conf-include-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("d")).unwrap();
        for n in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            fs::write(dir.join("d").join(n), "").unwrap();
        }
        let got = resolve(&dir, "d/*.conf").unwrap();
        let names: Vec<String> = got.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["a.conf", "b.conf"]);
        assert!(resolve(&dir, "nodir/*.conf").unwrap().is_empty());
        assert_eq!(resolve(&dir, "d/a.conf").unwrap(), vec![dir.join("d/a.conf")]);
        assert!(resolve(&dir, "d/missing.conf").unwrap_err().contains("include file not found"));
        assert!(resolve(&dir, "d").unwrap_err().contains("not a file"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
