//! Userfiles kept in memory and re-read when they change on disk: every check stats the
//! file (one syscall), and a different mtime, size or inode reads it again, so adding or
//! removing a user needs no reload. The tables read at conf load (as the start user,
//! before privileges are dropped) seed the store, so a file only root can read keeps
//! working until it changes.
//!
//! A file that no longer reads or parses fails closed: its routes answer 500 until it is
//! fixed (a stale table could still admit a removed user).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::userfile::{parse_userfile, FileKind, UserTable};

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    mtime: (i64, i64),
    size: u64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp { mtime: (m.mtime(), m.mtime_nsec()), size: m.size(), ino: m.ino(), dev: m.dev() }
    }
}

/// A userfile as read: its stamp and entries.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub stamp: Stamp,
    pub table: UserTable,
}

/// Reads and parses one userfile; the error is a sentence (`path:line: why`).
pub fn read_userfile(path: &Path, kind: FileKind) -> Result<LoadedFile, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    let table = parse_userfile(&text, kind).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))?;
    Ok(LoadedFile { path: path.to_path_buf(), kind, stamp: Stamp::of(&meta), table })
}

#[derive(Debug)]
enum Entry {
    Ok(LoadedFile),
    /// The stamp that failed (so the error is logged once per version) and why.
    Broken(Option<Stamp>, String),
}

/// Every userfile in use, by path and kind.
#[derive(Debug, Default)]
pub struct UserFiles {
    files: HashMap<(PathBuf, FileKind), Entry>,
}

/// A userfile that cannot be used now; `fresh` is true the first time this version of
/// the problem is seen (log it then, not on every request).
#[derive(Debug)]
pub struct Unusable {
    pub reason: String,
    pub fresh: bool,
}

impl UserFiles {
    /// Seeds the store with the files the conf load read (start and every reload).
    pub fn seed(&mut self, loaded: &[LoadedFile]) {
        for f in loaded {
            self.files.insert((f.path.clone(), f.kind), Entry::Ok(f.clone()));
        }
    }

    /// The current table of `path`, re-read if the file changed since it was read.
    pub fn table(&mut self, path: &Path, kind: FileKind) -> Result<&UserTable, Unusable> {
        let key = (path.to_path_buf(), kind);
        let now_stamp = fs::metadata(path).map(|m| Stamp::of(&m));
        let current = match (self.files.get(&key), &now_stamp) {
            (Some(Entry::Ok(f)), Ok(s)) => f.stamp == *s,
            (Some(Entry::Broken(Some(old), _)), Ok(s)) => old == s,
            (Some(Entry::Broken(None, _)), Err(_)) => true,
            _ => false,
        };
        if !current {
            let entry = match (read_userfile(path, kind), now_stamp) {
                (Ok(f), _) => {
                    log::info!("auth: read {} ({} users)", path.display(), f.table.len());
                    Entry::Ok(f)
                }
                (Err(e), Ok(s)) => Entry::Broken(Some(s), e),
                (Err(e), Err(_)) => Entry::Broken(None, e),
            };
            self.files.insert(key.clone(), entry);
            if let Some(Entry::Broken(_, reason)) = self.files.get(&key) {
                return Err(Unusable { reason: reason.clone(), fresh: true });
            }
        }
        match self.files.get(&key) {
            Some(Entry::Ok(f)) => Ok(&f.table),
            Some(Entry::Broken(_, reason)) => Err(Unusable { reason: reason.clone(), fresh: false }),
            None => Err(Unusable { reason: format!("{}: not loaded", path.display()), fresh: true }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_on_change_and_fails_closed() {
        let dir = std::env::temp_dir().join(format!("wstund-userfiles-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("users");
        fs::write(&path, "a:pw\n").unwrap();
        let mut s = UserFiles::default();
        s.seed(&[read_userfile(&path, FileKind::Plain).unwrap()]);
        assert!(s.table(&path, FileKind::Plain).unwrap().get("a").is_some());
        fs::write(&path, "a:pw\nbb:pw2\n").unwrap();
        assert!(s.table(&path, FileKind::Plain).unwrap().get("bb").is_some(), "size changed: re-read");
        fs::write(&path, "broken\n").unwrap();
        let e = s.table(&path, FileKind::Plain).unwrap_err();
        assert!(e.fresh && e.reason.ends_with(":1: expected user:secret"), "{}", e.reason);
        assert!(!s.table(&path, FileKind::Plain).unwrap_err().fresh, "reported once");
        fs::remove_file(&path).unwrap();
        assert!(s.table(&path, FileKind::Plain).unwrap_err().fresh);
        let _ = fs::remove_dir(&dir);
    }
}
