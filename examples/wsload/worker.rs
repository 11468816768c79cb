//! A worker thread: its own mio `Poll` and share of the connections, running the stages of
//! a mode (setup, measure or hold and verify, drain) in step with the other workers.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::conn::{drive_conn, kick, start_close, Conn, Env, Phase, Scratch, Stage, Stats};
use crate::proto::{xorshift, FrameRx, OutBuf, Pattern};
use crate::{Cfg, Mode, DRAIN_TIMEOUT, KEEP_ERRORS, READ_BUF, SETUP_TIMEOUT, VERIFY_TIMEOUT};

pub(crate) struct Shared {
    pub(crate) ready: AtomicUsize,
    pub(crate) go: Mutex<Option<Instant>>,
    pub(crate) release: AtomicBool,
    pub(crate) abort: AtomicBool,
}

pub(crate) struct Worker {
    cfg: Arc<Cfg>,
    pat: Arc<Pattern>,
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    rbuf: Vec<u8>,
    rng: u64,
    stage: Stage,
    /// Connections this thread owns (idle/throughput/pingpong) or keeps busy (connrate).
    target: usize,
    started: usize,
    n_ready: usize,
    again: Vec<usize>,
    stats: Stats,
    scratch: Scratch,
}

impl Worker {
    pub(crate) fn new(
        cfg: Arc<Cfg>,
        pat: Arc<Pattern>,
        shared: Arc<Shared>,
        poll: Poll,
        target: usize,
        seed: u64,
    ) -> Worker {
        Worker {
            cfg,
            pat,
            shared,
            poll,
            events: Events::with_capacity(1024),
            conns: Slab::with_capacity(target),
            rbuf: vec![0u8; READ_BUF],
            rng: seed,
            stage: Stage::Setup,
            target,
            started: 0,
            n_ready: 0,
            again: Vec::new(),
            stats: Stats::default(),
            scratch: Scratch::default(),
        }
    }

    fn start_conn(&mut self) {
        self.started += 1;
        let src = match self.cfg.addr {
            SocketAddr::V4(a) if self.cfg.src_ips > 1 && a.ip().is_loopback() => {
                Some(std::net::Ipv4Addr::new(
                    127,
                    0,
                    0,
                    2 + (self.started % self.cfg.src_ips as usize) as u8,
                ))
            }
            _ => None,
        };
        let mut sock = match connect_from(self.cfg.addr, src) {
            Ok(s) => s,
            Err(e) => return self.error(format!("connect: {e}")),
        };
        let _ = sock.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(entry.key()), interest)
        {
            return self.error(format!("register: {e}"));
        }
        self.rng = xorshift(self.rng);
        entry.insert(Conn {
            sock,
            phase: Phase::Connecting,
            accept: String::new(),
            head: Vec::new(),
            out: OutBuf::default(),
            rx: FrameRx::default(),
            seed: (self.rng % self.pat.period as u64) as usize,
            sent: 0,
            recv: 0,
            t0: Instant::now(),
            readable: false,
            writable: false,
            rdhup: false,
            probing: false,
            got_close: false,
            shut_pending: false,
            greet_left: 0,
            deflate: None,
        });
    }

    fn error(&mut self, msg: String) {
        self.stats.errors += 1;
        if self.stats.errs.len() < KEEP_ERRORS {
            self.stats.errs.push(msg);
        }
        if self.stage == Stage::Setup || self.stats.errors > 1000 {
            self.shared.abort.store(true, Ordering::Relaxed);
        }
        if self.cfg.mode == Mode::ConnRate && self.stage == Stage::Measure {
            self.start_conn();
        }
    }

    fn drive(&mut self, key: usize) {
        let Worker {
            conns,
            rbuf,
            cfg,
            pat,
            stats,
            rng,
            stage,
            scratch,
            ..
        } = self;
        let Some(c) = conns.get_mut(key) else { return };
        let mut env = Env {
            cfg,
            pat,
            stage: *stage,
            stats,
            rng,
            scratch,
        };
        match drive_conn(c, rbuf, &mut env) {
            Err(e) => {
                self.conns.remove(key);
                self.error(e);
            }
            Ok(ev) => {
                if ev.again {
                    self.again.push(key);
                }
                if ev.ready {
                    self.n_ready += 1;
                    if self.cfg.mode == Mode::Flood {
                        // Never read again: no readiness events either, so the generator
                        // spends nothing on a connection whose backend floods it.
                        if let Some(c) = self.conns.get_mut(key) {
                            let _ = self.poll.registry().deregister(&mut c.sock);
                        }
                    }
                    if self.stage == Stage::Setup && self.started < self.target {
                        self.start_conn();
                    }
                }
                if ev.finished {
                    let c = self.conns.remove(key);
                    if self.cfg.mode == Mode::ConnRate && self.stage == Stage::Measure {
                        self.stats.completed += 1;
                        let us = c.t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        self.stats.lat_us.push(us);
                        self.start_conn();
                    }
                }
            }
        }
    }

    /// One poll round plus everything that became ready.
    fn turn(&mut self, timeout: Duration) {
        let timeout = if self.again.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                self.error(format!("poll: {e}"));
                self.shared.abort.store(true, Ordering::Relaxed);
            }
            return;
        }
        let retry = std::mem::take(&mut self.again);
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let hup = e.is_read_closed() || e.is_error();
                (
                    e.token().0,
                    e.is_readable() || hup,
                    e.is_writable() || e.is_error(),
                    hup,
                )
            })
            .collect();
        for (key, r, w, hup) in ready {
            if let Some(c) = self.conns.get_mut(key) {
                c.readable |= r;
                c.writable |= w;
                c.rdhup |= hup;
                self.drive(key);
            }
        }
        for key in retry {
            self.drive(key);
        }
    }

    fn aborted(&self) -> bool {
        self.shared.abort.load(Ordering::Relaxed)
    }

    /// Runs turns until `done` or `deadline`; returns false on timeout or abort.
    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Worker) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.aborted() {
                return false;
            }
            self.turn((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Applies `f` to every connection, then drives it (so queued bytes go out); a
    /// connection `f` fails is dropped and counted as an error.
    fn each(&mut self, f: impl Fn(&mut Conn, &mut Env) -> Result<(), String>) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Worker {
                conns,
                cfg,
                pat,
                stats,
                rng,
                stage,
                scratch,
                ..
            } = self;
            let r = match conns.get_mut(key) {
                Some(c) => {
                    let mut env = Env {
                        cfg,
                        pat,
                        stage: *stage,
                        stats,
                        rng,
                        scratch,
                    };
                    f(c, &mut env)
                }
                None => Ok(()),
            };
            if let Err(e) = r {
                self.conns.remove(key);
                self.error(e);
                continue;
            }
            self.drive(key);
        }
    }

    /// Throughput and ping-pong send nothing before the window opens, so a connection
    /// that sent but got no byte back in the whole window is stuck: a tunnel that loses
    /// data without closing would otherwise read as a slow run with no errors.
    fn stalled(&mut self) {
        let stuck: Vec<(usize, u64)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open && c.recv == 0 && c.sent > 0)
            .map(|(k, c)| (k, c.sent))
            .collect();
        for (key, sent) in stuck {
            self.conns.remove(key);
            self.error(format!(
                "no echoed byte in the whole window ({sent} bytes sent): the tunnel lost data or stalled"
            ));
        }
    }

    /// flood, end of the hold: how many connections are still ESTABLISHED (neither closed
    /// nor reset by the daemon) and how many bytes sit unread in their receive queues.
    fn flood_report(&mut self) {
        use std::os::fd::AsRawFd;
        let mut open = 0u64;
        for (_, c) in self.conns.iter() {
            let fd = c.sock.as_raw_fd();
            // SAFETY: getsockopt/ioctl on a live socket fd with correctly sized outputs.
            unsafe {
                let mut info: libc::tcp_info = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
                if libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    &mut info as *mut libc::tcp_info as *mut libc::c_void,
                    &mut len,
                ) == 0
                    && info.tcpi_state == 1
                // TCP_ESTABLISHED
                {
                    open += 1;
                }
                let mut unread: libc::c_int = 0;
                if libc::ioctl(fd, libc::FIONREAD, &mut unread) == 0 {
                    self.stats.unread_bytes += unread.max(0) as u64;
                }
            }
        }
        self.stats.completed = open;
    }

    fn wait_go(&mut self) -> Option<Instant> {
        self.shared.ready.fetch_add(1, Ordering::SeqCst);
        loop {
            if let Ok(g) = self.shared.go.lock() {
                if let Some(t) = *g {
                    return Some(t);
                }
            }
            if self.aborted() {
                return None;
            }
            self.turn(Duration::from_millis(2));
        }
    }

    pub(crate) fn run(mut self) -> Stats {
        let cfg = self.cfg.clone();
        if cfg.mode == Mode::ConnRate {
            let Some(go) = self.wait_go() else {
                return self.stats;
            };
            self.stage = Stage::Measure;
            for _ in 0..self.target {
                self.start_conn();
            }
            let end = go + Duration::from_secs_f64(cfg.secs);
            self.run_until(end, |_| false);
        } else {
            let t = Instant::now();
            for _ in 0..self.target.min(cfg.burst) {
                self.start_conn();
            }
            let target = self.target;
            if !self.run_until(t + SETUP_TIMEOUT, |w| w.n_ready >= target) {
                if !self.aborted() {
                    self.error(format!(
                        "setup: only {} of {target} connections open",
                        self.n_ready
                    ));
                }
                self.shared.abort.store(true, Ordering::Relaxed);
            }
            self.stats.opened = self.n_ready as u64;
            self.stats.setup_secs = t.elapsed().as_secs_f64();
            let Some(go) = self.wait_go() else {
                return self.stats;
            };
            match cfg.mode {
                Mode::Throughput | Mode::PingPong => {
                    self.stage = Stage::Measure;
                    self.each(kick);
                    let end = go + Duration::from_secs_f64(cfg.secs);
                    self.run_until(end, |_| false);
                    if cfg.mode == Mode::PingPong {
                        self.stats.inflight_max_us = self
                            .conns
                            .iter()
                            .filter(|(_, c)| c.phase == Phase::Open && c.sent > c.recv)
                            .map(|(_, c)| c.t0.elapsed().as_micros().min(u32::MAX as u128) as u32)
                            .max()
                            .unwrap_or(0);
                    }
                    self.stalled();
                }
                _ => {
                    self.stage = Stage::Hold;
                    let shared = self.shared.clone();
                    self.run_until(far_future(), |_| shared.release.load(Ordering::Relaxed));
                    if cfg.mode == Mode::Flood {
                        self.flood_report();
                        // Closed with data unread: the kernel resets each connection.
                        self.conns.clear();
                        return self.stats;
                    }
                    self.stage = Stage::Verify;
                    self.n_ready = 0;
                    self.each(|c, env| {
                        if c.phase == Phase::Open {
                            kick(c, env)
                        } else {
                            Ok(())
                        }
                    });
                    let n = self.conns.len();
                    if !self.run_until(Instant::now() + VERIFY_TIMEOUT, |w| w.n_ready >= n) {
                        let msg = format!(
                            "verify: only {} of {n} held connections echoed",
                            self.n_ready
                        );
                        self.error(msg);
                    }
                    self.stats.completed = self.n_ready as u64;
                }
            }
        }
        self.stage = Stage::Drain;
        self.each(|c, env| {
            if c.phase == Phase::Open {
                start_close(c, env)
            }
            Ok(())
        });
        // Connections still handshaking when the window closed get no close frame: drop them.
        let half_open: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase != Phase::Closing)
            .map(|(k, _)| k)
            .collect();
        for k in half_open {
            self.conns.remove(k);
            self.stats.unfinished += 1;
        }
        self.run_until(Instant::now() + DRAIN_TIMEOUT, |w| w.conns.is_empty());
        self.stats.unfinished += self.conns.len() as u64;
        self.stats
    }
}

/// A non-blocking connect, optionally from a given source address. The port is left to
/// connect() (IP_BIND_ADDRESS_NO_PORT), which then only has to be unique per 4-tuple.
fn connect_from(addr: SocketAddr, src: Option<std::net::Ipv4Addr>) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (Some(src), SocketAddr::V4(dst)) = (src, addr) else {
        return TcpStream::connect(addr);
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket fd is wrapped in an owning TcpStream at once (closed on every
    // error path by its drop); setsockopt/bind/connect get valid pointers and lengths.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let a = sin(src, 0);
        if libc::bind(fd, &a as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let d = sin(*dst.ip(), dst.port());
        if libc::connect(fd, &d as *const _ as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(sock))
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 86400)
}
