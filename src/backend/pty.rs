//! The master side of a pty program's terminal (`process/pty.rs`), seen as a backend
//! stream: one descriptor read and written like a socket, resized on request.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;


/// A terminal's master side, non-blocking.
pub struct PtyStream {
    master: File,
    /// The program's session (and process group) id, for the hangup.
    pid: i32,
}

impl PtyStream {
    pub fn new(master: OwnedFd, pid: i32) -> io::Result<PtyStream> {
        let fd = master.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL only change the file status flags of our descriptor.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(PtyStream { master: File::from(master), pid })
    }

    /// The program's output. EIO is how a master reports that every slave descriptor is
    /// closed (the program and everything it started are gone): that is EOF.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.master.read(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            r => r,
        }
    }

    /// Input for the program; once the terminal is hung up it is dropped, as for a
    /// stdio program whose stdin is closed (its exit ends the connection).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.master.write(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(buf.len()),
            r => r,
        }
    }

    /// The client is done: a terminal has no half-close, so its end is a hangup — SIGHUP
    /// (and SIGCONT, as the kernel sends on a hangup) to the session leader's group and
    /// to the foreground job. The kill ladder follows when the connection retires it.
    pub fn hang_up(&self) {
        let mut groups = vec![self.pid];
        if let Some(fg) = foreground_group(self.master.as_raw_fd()).filter(|&g| g != self.pid) {
            groups.push(fg);
        }
        for g in groups {
            let _ = killpg(Pid::from_raw(g), Signal::SIGHUP);
            let _ = killpg(Pid::from_raw(g), Signal::SIGCONT);
        }
    }

    /// New window size: the kernel sends SIGWINCH to the foreground job.
    pub fn resize(&self, size: WinSize) -> io::Result<()> {
        set_size(self.master.as_raw_fd(), size)
    }

    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        reg.register(&mut SourceFd(&self.master.as_raw_fd()), token, Interest::READABLE | Interest::WRITABLE)
    }

    pub fn deregister(&mut self, reg: &Registry) {
        let _ = reg.deregister(&mut SourceFd(&self.master.as_raw_fd()));
    }
}

/// A window size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    pub cols: u16,
    pub rows: u16,
}

impl WinSize {
    /// The size a terminal starts with when the client asks for none (a VT100's).
    pub const DEFAULT: WinSize = WinSize { cols: 80, rows: 24 };
    /// Larger sizes are refused: no terminal is that big, and a program would allocate
    /// screen buffers for it.
    pub const MAX: u16 = 4096;

    /// A size from a client: both in 1..=MAX.
    pub fn new(cols: u64, rows: u64) -> Option<WinSize> {
        let ok = |n: u64| (1..=u64::from(Self::MAX)).contains(&n);
        (ok(cols) && ok(rows)).then_some(WinSize { cols: cols as u16, rows: rows as u16 })
    }

    /// `cols=` and `rows=` in a query string; `None` when either is missing or invalid.
    pub fn from_query(query: &str) -> Option<WinSize> {
        let (mut cols, mut rows) = (None, None);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "cols" => cols = v.parse::<u64>().ok(),
                "rows" => rows = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        WinSize::new(cols?, rows?)
    }
}

/// The one control message a pty route takes, in a text frame: `{"resize":[cols,rows]}`
/// (JSON, whitespace allowed between tokens). Anything else is refused with the reason,
/// so a page that sends keystrokes as text learns why at once.
pub fn parse_control(msg: &[u8]) -> Result<WinSize, String> {
    let text = std::str::from_utf8(msg).map_err(|_| "control message is not UTF-8".to_string())?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bad = || format!("unknown control message {text:?}; text frames on a pty route carry {{\"resize\":[cols,rows]}}, terminal input goes in binary frames");
    let inner = compact.strip_prefix("{\"resize\":[").and_then(|r| r.strip_suffix("]}")).ok_or_else(bad)?;
    let (c, r) = inner.split_once(',').ok_or_else(bad)?;
    let (c, r) = (c.parse::<u64>().map_err(|_| bad())?, r.parse::<u64>().map_err(|_| bad())?);
    WinSize::new(c, r).ok_or_else(|| format!("window size {c}x{r} out of range (1 to {} each)", WinSize::MAX))
}

/// Sets the terminal's window size; the kernel sends SIGWINCH to its foreground group.
pub fn set_size(master: RawFd, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The foreground process group of the terminal (the job a shell runs), if any.
pub fn foreground_group(master: RawFd) -> Option<i32> {
    let mut pgrp: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t to the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(master, libc::TIOCGPGRP, &mut pgrp) };
    (rc == 0 && pgrp > 0).then_some(pgrp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages() {
        assert_eq!(parse_control(br#"{"resize":[120,40]}"#), Ok(WinSize { cols: 120, rows: 40 }));
        assert_eq!(parse_control(b"{ \"resize\" : [ 7 , 3 ] }\n"), Ok(WinSize { cols: 7, rows: 3 }));
        for bad in [&b"ls\r"[..], br#"{"resize":[0,4]}"#, br#"{"resize":[4]}"#, br#"{"size":[4,4]}"#, br#"{"resize":[4,4,4]}"#, b"\xff"] {
            assert!(parse_control(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse_control(b"ls\r").unwrap_err().contains("binary frames"));
    }

    #[test]
    fn sizes_from_the_query() {
        assert_eq!(WinSize::from_query("cols=120&rows=40"), Some(WinSize { cols: 120, rows: 40 }));
        assert_eq!(WinSize::from_query("x=1&rows=3&cols=7"), Some(WinSize { cols: 7, rows: 3 }));
        assert_eq!(WinSize::from_query("cols=120"), None);
        assert_eq!(WinSize::from_query("cols=0&rows=5"), None);
        assert_eq!(WinSize::from_query("cols=99999&rows=5"), None);
        assert_eq!(WinSize::from_query("cols=-1&rows=5"), None);
        assert_eq!(WinSize::from_query(""), None);
    }

}
