//! Shared harness for wstund's end-to-end tests.
//!
//! Every test runs the real `wstund` binary (built by cargo for this test run) against real
//! backends living in the test process, and talks to it with real clients: hand-made frames
//! on a raw socket when the test needs exact bytes on the wire (protocol violations), the
//! tungstenite client otherwise. Rules that keep the suite safe to run in parallel:
//! port 0 everywhere (the daemon reports the port it bound), a private temp dir per daemon
//! and per unix backend (removed on drop), a deadline on every blocking call, and no sleeps
//! to wait for readiness (the daemon prints a `ready` line once every listener is bound).
//!
//! - [`daemon`]: start/stop `wstund`, its logs, RSS, exit status; `run_wstund` for -t/-v/-h.
//! - [`conf`]: the conf builder (lighttpd syntax).
//! - [`backend`]: echo and special backends (TCP and unix) with counters.
//! - [`raw`]: exact bytes on the wire: upgrade requests, masked frames, frame parsing.
//! - [`ws`]: the tungstenite client.
//! - [`procs`]: what /proc says about wstund's children, test programs, a raw-client
//!   loop up to the close frame (the managed-process tests).
//! - [`cdp`]: headless Chromium over the DevTools protocol (evaluate, screenshot).
//! - [`pki`]: a test CA and leaves made with `openssl`, for the TLS tests.
//! - [`options`]: hand-driven backends, message readers and client-side deflate (the
//!   `options_*` tests).
#![allow(dead_code)]

pub mod backend;
pub mod cdp;
pub mod dumpdom;
pub mod faults;
pub mod conf;
pub mod daemon;
pub mod options;
pub mod pki;
pub mod procs;
pub mod raw;
pub mod ws;

// Each test file uses a different part of the harness.
#[allow(unused_imports)]
pub use {backend::*, conf::*, daemon::*, raw::*, ws::*};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use tungstenite;

/// The daemon under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_wstund");

/// Deadline for any single blocking socket operation in the helpers.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a daemon may take to print its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A temp directory removed (recursively) on drop. Names are unique per process and call,
/// so parallel tests never share one. Kept short: unix socket paths must fit in 108 bytes.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > 40 {
            base = PathBuf::from("/tmp");
        }
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = base.join(format!("wst-{tag}-{}-{n}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Deterministic xorshift64* generator: test data and masking keys without a rand crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    pub fn mask(&mut self) -> [u8; 4] {
        let b = self.next_u64().to_le_bytes();
        [b[0], b[1], b[2], b[3]]
    }
}

/// A seed that differs between calls so concurrent connections use different keys/masks.
pub fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    nanos ^ COUNTER.fetch_add(0x1234_5678_9ABC, Ordering::SeqCst)
}

/// Text of about `n` bytes mixing 1-, 2-, 3- and 4-byte UTF-8 sequences, so that any
/// fixed-size chunking of its bytes splits multi-byte characters somewhere.
pub fn utf8_text(n: usize, seed: u64) -> String {
    const CHARS: &[char] = &['a', 'Z', '7', ' ', 'é', 'ß', 'Ж', '€', '中', '語', '😀', '𝄞'];
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(n + 4);
    while s.len() < n {
        s.push(CHARS[rng.below(CHARS.len() as u64) as usize]);
    }
    s
}

/// Minimal standard base64 encoder (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// A fresh, valid `Sec-WebSocket-Key` (16 random bytes, base64).
pub fn ws_key() -> String {
    base64(&Rng::new(fresh_seed()).bytes(16))
}

/// The `Sec-WebSocket-Accept` value a server must answer for `key`.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// A port on 127.0.0.1 where nothing listens (bound then released).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

/// Path of the repository (the crate root).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Poll `cond` every 10 ms until it is true or `timeout` passes; returns the final value.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The venv interpreter with `websockets` installed: `$WSTUND_PYTHON`, else
/// `<repo>/.venv/bin/python`. Panics (the test fails, never skips) when neither exists.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WSTUND_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "WSTUND_PYTHON={} does not exist; run scripts/test.sh to set up the test venv",
            p.display()
        );
        return p;
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python with `websockets` for the non-Rust client test: {} is missing and WSTUND_PYTHON is unset.\n\
         Run scripts/test.sh (it creates .venv and installs websockets), or set WSTUND_PYTHON.",
        p.display()
    );
    p
}

/// Makes the next close of `s` send a RST instead of a FIN (SO_LINGER with a zero
/// timeout): a peer that resets.
pub fn reset_on_close(s: &std::net::TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt(2) with a pointer to a live linger struct and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `src` (127.0.0.2, ...):
/// std has no bind-before-connect, so the raw calls.
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/bind/connect on a descriptor we own, handed to TcpStream first.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sa(src, 0);
        let rc = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
        let remote = sa(std::net::Ipv4Addr::LOCALHOST, port);
        let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect from {src}: {}", std::io::Error::last_os_error());
        stream
    }
}
