//! `server.username`, `server.groupname` and `server.socket-group` name accounts of
//! this machine: a name that does not exist is a configuration error at its position
//! (`-t` says so), not a surprise at start. Root is refused as lighttpd refuses it
//! ("I will not set uid to 0"): leaving `server.username` unset is how to keep root.

use nix::unistd::{Group, User};

/// Why an account directive cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    NoSuchUser(String),
    NoSuchGroup(String),
    /// The name exists but is root's (uid or gid 0).
    Root(String),
    /// The account database could not be read.
    Lookup { name: String, err: String },
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::NoSuchUser(n) => write!(f, "no such user {n:?}"),
            AccountError::NoSuchGroup(n) => write!(f, "no such group {n:?}"),
            AccountError::Root(n) => {
                write!(f, "{n:?} is root (id 0); wstund will not switch to root (leave it unset to keep the current user)")
            }
            AccountError::Lookup { name, err } => write!(f, "cannot look up {name:?}: {err}"),
        }
    }
}

/// The uid and primary gid of user `name`.
pub fn user(name: &str) -> Result<(u32, u32), AccountError> {
    match User::from_name(name) {
        Ok(Some(u)) if u.uid.is_root() => Err(AccountError::Root(name.to_string())),
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(AccountError::NoSuchUser(name.to_string())),
        Err(e) => Err(AccountError::Lookup { name: name.to_string(), err: e.to_string() }),
    }
}

/// The gid of group `name`. Switching to group root is refused (`switch_to`); a socket
/// may well belong to it.
pub fn group(name: &str, switch_to: bool) -> Result<u32, AccountError> {
    match Group::from_name(name) {
        Ok(Some(g)) if g.gid.as_raw() == 0 && switch_to => Err(AccountError::Root(name.to_string())),
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(AccountError::NoSuchGroup(name.to_string())),
        Err(e) => Err(AccountError::Lookup { name: name.to_string(), err: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_unknown_and_root() {
        assert_eq!(user("wstund-no-such-user-x"), Err(AccountError::NoSuchUser("wstund-no-such-user-x".into())));
        assert_eq!(user("root"), Err(AccountError::Root("root".into())));
        assert!(user("nobody").is_ok());
        assert_eq!(group("root", true), Err(AccountError::Root("root".into())));
        assert_eq!(group("root", false), Ok(0));
        assert!(matches!(group("wstund-no-such-group-x", true), Err(AccountError::NoSuchGroup(_))));
    }
}
