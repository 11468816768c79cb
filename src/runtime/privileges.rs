//! Dropping root, in lighttpd's order: everything that needs root is done first
//! (listeners bound, logs and pid file opened), then `chroot` (if `server.chroot`),
//! `setgroups`, `setgid`, `setuid`. Pools and stdio programs are started afterwards, so
//! they run as that user too, and the sockets of pools belong to it.
//!
//! Names are looked up before the chroot (the passwd and group files are outside it);
//! the supplementary groups are the user's, as lighttpd's `initgroups`.
//!
//! After the drop wstund checks that it cannot become root again (`setuid(0)` and
//! `setgid(0)` must fail) and refuses to run otherwise.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{self, Gid, Uid};

use crate::conf::{accounts, ServerSettings};

/// Who wstund becomes, resolved from the conf while /etc is still reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `server.username`: uid, name and supplementary groups.
    pub user: Option<(Uid, String, Vec<Gid>)>,
    /// `server.groupname`, else the user's primary group.
    pub gid: Option<Gid>,
    pub chroot: Option<PathBuf>,
}

/// Why the drop failed (every one ends the start).
#[derive(Debug)]
pub struct PrivilegeError(pub String);

impl std::fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrivilegeError {}

fn fail(what: &str, e: impl std::fmt::Display) -> PrivilegeError {
    PrivilegeError(format!("{what}: {e}"))
}

impl Target {
    /// Resolves `server.username`, `server.groupname` and `server.chroot`.
    pub fn resolve(s: &ServerSettings) -> Result<Target, PrivilegeError> {
        let mut gid = None;
        if let Some(g) = &s.groupname {
            gid = Some(Gid::from_raw(accounts::group(g, true).map_err(|e| fail("server.groupname", e))?));
        }
        let mut user = None;
        if let Some(name) = &s.username {
            let (uid, primary) = accounts::user(name).map_err(|e| fail("server.username", e))?;
            let primary = Gid::from_raw(primary);
            let gid = *gid.get_or_insert(primary);
            let cname = CString::new(name.as_bytes()).map_err(|e| fail("server.username", e))?;
            let groups = unistd::getgrouplist(&cname, gid).map_err(|e| fail("server.username: supplementary groups", e))?;
            user = Some((Uid::from_raw(uid), name.clone(), groups));
        }
        Ok(Target { user, gid, chroot: s.chroot.clone() })
    }

    /// Nothing to change.
    pub fn is_noop(&self) -> bool {
        self.user.is_none() && self.gid.is_none() && self.chroot.is_none()
    }

    /// Already the user and group asked for, without chroot: a service manager started
    /// wstund as `server.username` (systemd's `User=`), so there is nothing to drop.
    pub fn in_effect(&self) -> bool {
        self.chroot.is_none()
            && self.user.as_ref().is_none_or(|(uid, _, _)| *uid == nix::unistd::getuid() && *uid == nix::unistd::geteuid())
            && self.gid.is_none_or(|g| g == nix::unistd::getgid() && g == nix::unistd::getegid())
    }

    /// The uid and gid files created for wstund (unix listeners) should get.
    pub fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (self.user.as_ref().map(|u| u.0), self.gid)
    }

    /// chroot, setgroups, setgid, setuid; then proves there is no way back.
    pub fn apply(&self) -> Result<(), PrivilegeError> {
        if let Some(root) = &self.chroot {
            chroot(root)?;
        }
        if let Some(gid) = self.gid {
            let groups = self.user.as_ref().map(|u| u.2.clone()).unwrap_or_else(|| vec![gid]);
            unistd::setgroups(&groups).map_err(|e| fail("setgroups", e))?;
            unistd::setgid(gid).map_err(|e| fail("setgid", e))?;
        }
        if let Some((uid, name, _)) = &self.user {
            unistd::setuid(*uid).map_err(|e| fail(&format!("setuid({name})"), e))?;
            no_way_back(*uid)?;
        }
        Ok(())
    }
}

fn chroot(root: &Path) -> Result<(), PrivilegeError> {
    // (The log's timestamps are UTC: no zone file is needed inside the chroot.)
    let c = CString::new(root.as_os_str().as_bytes()).map_err(|e| fail("server.chroot", e))?;
    // SAFETY: chroot(2) with a NUL-terminated path.
    if unsafe { libc::chroot(c.as_ptr()) } != 0 {
        return Err(fail(&format!("chroot({})", root.display()), io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(|e| fail("chdir(/) in the chroot", e))
}

/// After setuid to `uid`, every id is `uid` and root cannot be regained.
fn no_way_back(uid: Uid) -> Result<(), PrivilegeError> {
    let ids = unistd::getresuid().map_err(|e| fail("getresuid", e))?;
    if (ids.real, ids.effective, ids.saved) != (uid, uid, uid) {
        return Err(PrivilegeError(format!("after setuid the ids are {ids:?}, not all {uid}")));
    }
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError("setuid(0) succeeded after dropping privileges; refusing to run".into()));
    }
    if unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(PrivilegeError("setgid(0) succeeded after dropping privileges; refusing to run".into()));
    }
    Ok(())
}

/// The start-up line saying what the drop did (or that none was asked for as root).
pub fn describe(t: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &t.chroot {
        parts.push(format!("chroot {}", r.display()));
    }
    if let Some((uid, name, groups)) = &t.user {
        let gs: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        parts.push(format!("user {name} (uid {uid}, gid {}, groups {})", t.gid.map(|g| g.to_string()).unwrap_or_default(), gs.join(",")));
        parts.push("setuid(0) refused".into());
    } else if let Some(g) = t.gid {
        parts.push(format!("gid {g}"));
    }
    format!("privileges dropped: {}", parts.join(", "))
}

/// lighttpd 1.4 runs as root silently when `server.username` is unset; wstund says so
/// once, at start.
pub const ROOT_WARNING: &str =
    "warning: running as root: server.username is not set, so wstund and every program it starts keep root's privileges";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_nobody_with_its_groups() {
        let s = ServerSettings { username: Some("nobody".into()), ..ServerSettings::default() };
        let t = Target::resolve(&s).unwrap();
        let (uid, name, groups) = t.user.clone().unwrap();
        assert_eq!(name, "nobody");
        assert_ne!(uid.as_raw(), 0);
        assert!(groups.contains(&t.gid.unwrap()));
        assert!(!t.is_noop());
        assert!(describe(&t).contains("user nobody"));
        assert!(Target::resolve(&ServerSettings::default()).unwrap().is_noop());
    }

    #[test]
    fn groupname_overrides_the_users_group() {
        let s = ServerSettings { username: Some("nobody".into()), groupname: Some("nogroup".into()), ..ServerSettings::default() };
        let t = Target::resolve(&s).unwrap();
        let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap().gid;
        assert_eq!(t.gid, Some(nogroup));
    }
}
