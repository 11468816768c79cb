//! mod_auth's basic method with mod_authn_file's `htpasswd` and `plain` backends.
//!
//! The pure parts (a userfile line, an `Authorization: Basic` header, a hash check) have
//! no I/O so the conf loader, the handshake and a fuzz target can call them alike.
//! `store` re-reads a userfile when its stamp changes; `cache` remembers recently
//! verified credentials so a reconnecting client does not cost a bcrypt run on the loop.

pub mod basic;
pub mod cache;
pub mod hash;
pub mod store;
pub mod userfile;

pub use basic::{parse_authorization, Credentials};
pub use userfile::{parse_line, parse_userfile, FileKind, LineError, Secret, UserTable};

/// The loop's authentication state: userfiles and the verified-credential cache.
#[derive(Debug)]
pub struct AuthState {
    pub files: store::UserFiles,
    pub cache: cache::VerifiedCache,
}

impl AuthState {
    pub fn new(files: &[store::LoadedFile], max_age: std::time::Duration) -> AuthState {
        let mut s = AuthState { files: store::UserFiles::default(), cache: cache::VerifiedCache::new(max_age) };
        s.files.seed(files);
        s
    }

    /// A reload: the new conf's files (read by the loader) replace what was kept.
    pub fn reload(&mut self, files: &[store::LoadedFile], max_age: std::time::Duration) {
        self.files.seed(files);
        self.cache.set_max_age(max_age);
    }
}
