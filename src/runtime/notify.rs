//! systemd's readiness protocol (`sd_notify(3)`): one datagram of `KEY=value` lines to
//! the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a
//! leading `@`). Written here in a few lines rather than with a crate: it is one
//! `sendto(2)` on a socket std already has, and this way no thread, allocation or
//! dependency is added to the loop.
//!
//! Without `$NOTIFY_SOCKET` every call does nothing, so the loop calls these freely.
//! What the service manager hears:
//! - `READY=1` (with `MAINPID=`) once the listeners are bound and the pools started;
//! - `RELOADING=1` when a reload (SIGUSR1) begins, `READY=1` when it ends either way;
//! - `STOPPING=1` when a stop begins;
//! - `STATUS=` a one-line summary (tunnels open, backends up), sent only when it changes;
//! - `WATCHDOG=1` on every loop tick when `$WATCHDOG_USEC` is set for this process, so a
//!   stuck loop is noticed and the unit restarted.
//!
//! `init` takes the variables out of the environment, so that pool processes and stdio
//! programs do not talk to the service manager in wstund's name; a SIGUSR1 restart hands
//! them on explicitly (`handover_env`).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::Duration;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const WATCHDOG_PID: &str = "WATCHDOG_PID";

struct Notifier {
    /// The `$NOTIFY_SOCKET` value as given (handed on to a restarted wstund).
    name: String,
    addr: SocketAddr,
    socket: UnixDatagram,
    /// `$WATCHDOG_USEC`, when the watchdog is meant for this process.
    watchdog: Option<Duration>,
    /// The last `STATUS=` sent: a status is sent only when it changes.
    last_status: String,
    /// Failures are reported once, not on every tick.
    failed: bool,
}

static NOTIFIER: Mutex<Option<Notifier>> = Mutex::new(None);

/// The watchdog interval when it applies to `pid`: `WATCHDOG_PID` unset (inherited on
/// purpose) or naming `pid` (pure, for tests).
pub fn watchdog_for(pid: u32, usec: Option<&str>, wpid: Option<&str>) -> Option<Duration> {
    let usec = usec?.trim().parse::<u64>().ok().filter(|u| *u > 0)?;
    match wpid.map(|p| p.trim().parse::<u32>()) {
        None => Some(Duration::from_micros(usec)),
        Some(Ok(p)) if p == pid => Some(Duration::from_micros(usec)),
        Some(_) => None,
    }
}

/// The socket address `$NOTIFY_SOCKET` names: `/path`, or `@name` for the abstract
/// namespace (pure apart from building the address).
pub fn socket_addr(value: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "neither an absolute path nor an @abstract name"))
    }
}

/// Reads and removes `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. Called once
/// at start, before any child is started.
pub fn init() {
    let var = |k: &str| std::env::var(k).ok();
    let (name, usec, wpid) = (var(NOTIFY_SOCKET), var(WATCHDOG_USEC), var(WATCHDOG_PID));
    for k in [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID] {
        std::env::remove_var(k);
    }
    let Some(name) = name.filter(|n| !n.is_empty()) else { return };
    let made = socket_addr(&name).and_then(|addr| Ok((addr, UnixDatagram::unbound()?)));
    match made {
        Ok((addr, socket)) => {
            let _ = socket.set_nonblocking(true);
            let watchdog = watchdog_for(std::process::id(), usec.as_deref(), wpid.as_deref());
            if let Ok(mut n) = NOTIFIER.lock() {
                *n = Some(Notifier { name, addr, socket, watchdog, last_status: String::new(), failed: false });
            }
        }
        Err(e) => eprintln!("wstund: NOTIFY_SOCKET={name:?} is not usable: {e}"),
    }
}

fn send(message: &str) {
    let Ok(mut guard) = NOTIFIER.lock() else { return };
    let Some(n) = guard.as_mut() else { return };
    match n.socket.send_to_addr(message.as_bytes(), &n.addr) {
        Ok(_) => n.failed = false,
        Err(e) if !n.failed => {
            n.failed = true;
            log::warn!("sd_notify to {}: {e}", n.name);
        }
        Err(_) => {}
    }
}

/// Listeners bound, pools started: the service is up. `MAINPID=` lets a process other
/// than the one systemd started (a SIGUSR1 restart) take over as the main process.
pub fn ready() {
    send(&format!("READY=1\nMAINPID={}", std::process::id()));
}

/// A reload begins; `ready()` must follow when it ends, whether it worked or not.
pub fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// A stop begins (graceful or not).
pub fn stopping() {
    send("STOPPING=1");
}

/// A one-line summary; sent only when it differs from the last one.
pub fn status(line: &str) {
    {
        let Ok(mut guard) = NOTIFIER.lock() else { return };
        let Some(n) = guard.as_mut() else { return };
        if n.last_status == line {
            return;
        }
        n.last_status = line.to_string();
    }
    send(&format!("STATUS={}", line.replace('\n', " ")));
}

/// Called on every loop tick: the loop is alive.
pub fn watchdog() {
    let due = NOTIFIER.lock().ok().is_some_and(|g| g.as_ref().is_some_and(|n| n.watchdog.is_some()));
    if due {
        send("WATCHDOG=1");
    }
}

/// The variables a SIGUSR1 restart passes to the new wstund, so it can say READY and
/// keep the watchdog fed (`WATCHDOG_PID` left out: it would name the old process).
pub fn handover_env() -> Vec<(String, String)> {
    let Ok(guard) = NOTIFIER.lock() else { return Vec::new() };
    let Some(n) = guard.as_ref() else { return Vec::new() };
    let mut out = vec![(NOTIFY_SOCKET.to_string(), n.name.clone())];
    if let Some(w) = n.watchdog {
        out.push((WATCHDOG_USEC.to_string(), w.as_micros().to_string()));
    }
    out
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime(2) writes into the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return 0;
    }
    (t.tv_sec as u64).saturating_mul(1_000_000).saturating_add(t.tv_nsec as u64 / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_only_for_this_pid() {
        assert_eq!(watchdog_for(7, Some("3000000"), Some("7")), Some(Duration::from_secs(3)));
        assert_eq!(watchdog_for(7, Some("3000000"), None), Some(Duration::from_secs(3)));
        assert_eq!(watchdog_for(7, Some("3000000"), Some("8")), None, "meant for another process");
        assert_eq!(watchdog_for(7, None, Some("7")), None);
        assert_eq!(watchdog_for(7, Some("0"), Some("7")), None);
        assert_eq!(watchdog_for(7, Some("x"), None), None);
    }

    #[test]
    fn abstract_and_path_names() {
        use std::os::linux::net::SocketAddrExt;
        let a = socket_addr("@wstund/notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"wstund/notify"[..]));
        let p = socket_addr("/run/systemd/notify").unwrap();
        assert_eq!(p.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
        assert!(socket_addr("relative").is_err());
    }
}
