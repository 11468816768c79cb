//! Backends living in the test process: echo and special-purpose servers on TCP or unix
//! sockets, a thread per connection, with counters the tests assert on.
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{be_tcp, be_unix, TempDir};

/// A backend-side connection: TCP or unix.
pub enum BStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl BStream {
    pub fn try_clone(&self) -> io::Result<BStream> {
        Ok(match self {
            BStream::Tcp(s) => BStream::Tcp(s.try_clone()?),
            BStream::Unix(s) => BStream::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            BStream::Tcp(s) => s.shutdown(how),
            BStream::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            BStream::Tcp(s) => s.set_read_timeout(t),
            BStream::Unix(s) => s.set_read_timeout(t),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            BStream::Tcp(s) => s.set_write_timeout(t),
            BStream::Unix(s) => s.set_write_timeout(t),
        }
    }
}

impl Read for BStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BStream::Tcp(s) => s.read(buf),
            BStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for BStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BStream::Tcp(s) => s.write(buf),
            BStream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    accepted: usize,
    /// Connections on which the backend read EOF (the daemon shut down its side).
    eofs: usize,
    /// Connections whose handler returned.
    finished: usize,
}

/// What a backend observed; shared with its connection threads.
#[derive(Default)]
pub struct BackendStats {
    counters: Mutex<Counters>,
    cond: Condvar,
    /// Bytes the backend read from the daemon.
    pub bytes_in: AtomicU64,
    /// Bytes the backend wrote to the daemon.
    pub bytes_out: AtomicU64,
    /// Bytes that did not match the expected pattern (see [`pattern_sink_handler`]).
    pub errors: AtomicU64,
    /// Set when the backend is dropped: long-running handlers stop.
    pub stop: AtomicBool,
}

impl BackendStats {
    fn bump(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap());
        self.cond.notify_all();
    }

    pub fn note_eof(&self) {
        self.bump(|c| c.eofs += 1);
    }

    fn wait(&self, timeout: Duration, pred: impl Fn(&Counters) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.counters.lock().unwrap();
        loop {
            if pred(&c) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self.cond.wait_timeout(c, deadline - now).unwrap().0;
        }
    }
}

pub type Handler = Arc<dyn Fn(BStream, &BackendStats) + Send + Sync>;

/// A backend server in the test process: one thread accepting, one thread per connection
/// running `handler`. Stopped on drop (accept loop ends; flooders stop writing).
pub struct Backend {
    port: Option<u16>,
    path: Option<PathBuf>,
    stats: Arc<BackendStats>,
    _dir: Option<TempDir>,
}

impl Backend {
    pub fn tcp(handler: Handler) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let port = l.local_addr().unwrap().port();
        let stats = Arc::new(BackendStats::default());
        let st = stats.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                st.bump(|c| c.accepted += 1);
                let (h, st2) = (handler.clone(), st.clone());
                thread::spawn(move || {
                    h(BStream::Tcp(conn), &st2);
                    st2.bump(|c| c.finished += 1);
                });
            }
        });
        Backend { port: Some(port), path: None, stats, _dir: None }
    }

    pub fn unix(handler: Handler) -> Backend {
        let dir = TempDir::new("u");
        let path = dir.join("backend.sock");
        let l = UnixListener::bind(&path).expect("bind unix backend");
        let stats = Arc::new(BackendStats::default());
        let st = stats.clone();
        thread::spawn(move || {
            for conn in l.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                st.bump(|c| c.accepted += 1);
                let (h, st2) = (handler.clone(), st.clone());
                thread::spawn(move || {
                    h(BStream::Unix(conn), &st2);
                    st2.bump(|c| c.finished += 1);
                });
            }
        });
        Backend { port: None, path: Some(path), stats, _dir: Some(dir) }
    }

    pub fn echo() -> Backend {
        Backend::tcp(echo_handler())
    }

    pub fn echo_unix() -> Backend {
        Backend::unix(echo_handler())
    }

    pub fn port(&self) -> u16 {
        self.port.expect("not a TCP backend")
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("not a unix backend")
    }

    /// The conf entry for this backend.
    pub fn entry(&self) -> String {
        match (&self.port, &self.path) {
            (Some(p), _) => be_tcp(*p),
            (_, Some(p)) => be_unix(p),
            _ => unreachable!(),
        }
    }

    pub fn stats(&self) -> &BackendStats {
        &self.stats
    }

    pub fn accepted(&self) -> usize {
        self.stats.counters.lock().unwrap().accepted
    }

    pub fn eofs(&self) -> usize {
        self.stats.counters.lock().unwrap().eofs
    }

    pub fn bytes_in(&self) -> u64 {
        self.stats.bytes_in.load(Ordering::SeqCst)
    }

    pub fn bytes_out(&self) -> u64 {
        self.stats.bytes_out.load(Ordering::SeqCst)
    }

    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        self.stats.wait(timeout, |c| c.accepted >= n)
    }

    /// Wait until `n` connections have read EOF from the daemon.
    pub fn wait_eofs(&self, n: usize, timeout: Duration) -> bool {
        self.stats.wait(timeout, |c| c.eofs >= n)
    }

    pub fn wait_finished(&self, n: usize, timeout: Duration) -> bool {
        self.stats.wait(timeout, |c| c.finished >= n)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stats.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop` and releases the listener.
        if let Some(p) = self.port {
            let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_millis(200));
        }
        if let Some(p) = &self.path {
            let _ = UnixStream::connect(p);
        }
    }
}

/// Echo every byte back; on EOF note it, shut down the write side, finish.
pub fn echo_handler() -> Handler {
    Arc::new(|mut s: BStream, st: &BackendStats| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    let _ = s.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    st.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    st.bytes_out.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// Echo until `n` bytes have been received, then close the connection (both ways).
pub fn echo_then_close_handler(n: u64) -> Handler {
    Arc::new(move |mut s: BStream, st: &BackendStats| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = 0u64;
        while seen < n {
            let want = ((n - seen) as usize).min(buf.len());
            match s.read(&mut buf[..want]) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(k) => {
                    seen += k as u64;
                    st.bytes_in.fetch_add(k as u64, Ordering::SeqCst);
                    if s.write_all(&buf[..k]).is_err() {
                        return;
                    }
                    st.bytes_out.fetch_add(k as u64, Ordering::SeqCst);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
        let _ = s.shutdown(Shutdown::Both);
    })
}

/// Write each chunk (sleeping `gap` between chunks), then: close when `close_after` is
/// true, else echo what comes in until EOF.
pub fn script_handler(chunks: Vec<Vec<u8>>, gap: Duration, close_after: bool) -> Handler {
    Arc::new(move |mut s: BStream, st: &BackendStats| {
        for (i, c) in chunks.iter().enumerate() {
            if i > 0 {
                thread::sleep(gap);
            }
            if s.write_all(c).is_err() {
                return;
            }
            st.bytes_out.fetch_add(c.len() as u64, Ordering::SeqCst);
        }
        if close_after {
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(n) => {
                    st.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// Byte `i` of the flood stream: a pattern whose period (251) does not divide common
/// buffer sizes, so a lost, duplicated or reordered chunk shows up.
pub fn flood_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Write the flood pattern as fast as the daemon accepts it, until an error or `stop`.
/// Whatever the daemon sends is read and discarded by a second thread.
pub fn flood_handler() -> Handler {
    Arc::new(|s: BStream, st: &BackendStats| {
        if let Ok(mut r) = s.try_clone() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
        let mut s = s;
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let period: Vec<u8> = (0..251 * 256).map(flood_byte).collect(); // 64256 bytes, whole periods
        let mut off = 0usize;
        while !st.stop.load(Ordering::SeqCst) {
            match s.write(&period[off..]) {
                Ok(0) => return,
                Ok(n) => {
                    st.bytes_out.fetch_add(n as u64, Ordering::SeqCst);
                    off = (off + n) % period.len();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    })
}

/// Read everything, checking that byte `i` of the connection is [`flood_byte`]`(i)`;
/// mismatches are counted in `errors`.
pub fn pattern_sink_handler() -> Handler {
    paced_pattern_sink_handler(Duration::ZERO, Duration::ZERO)
}

/// [`pattern_sink_handler`] that starts reading after `start` and pauses `pause` after
/// each read of up to 256 KiB: a backend that reads late and in bursts.
pub fn paced_pattern_sink_handler(start: Duration, pause: Duration) -> Handler {
    Arc::new(move |mut s: BStream, st: &BackendStats| {
        thread::sleep(start);
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    st.note_eof();
                    return;
                }
                Ok(n) => {
                    let bad = buf[..n].iter().enumerate().filter(|(i, b)| **b != flood_byte(off + *i as u64)).count();
                    if bad > 0 {
                        st.errors.fetch_add(bad as u64, Ordering::SeqCst);
                    }
                    off += n as u64;
                    st.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    thread::sleep(pause);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// Accept and never read (holds the connection until the backend is dropped).
pub fn sink_handler() -> Handler {
    Arc::new(|s: BStream, st: &BackendStats| {
        while !st.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
        drop(s);
    })
}

/// A TCP port whose accept queue is full: the daemon's connect() hangs (the kernel drops
/// the SYN), exercising `connect-timeout`.
pub struct Blackhole {
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
    port: u16,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        // SAFETY: listen(2) on a socket we own; shrinks the backlog of a bound listener.
        let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen(0)");
        let port = l.local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => {
                    return Blackhole { _listener: l, _fillers: fillers, port };
                }
            }
        }
        panic!("could not fill the accept queue of a listen(0) socket");
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}
