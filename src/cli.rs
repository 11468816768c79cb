//! Command line: parse options, load and check the conf, bind, run.
//!
//! Exit codes: 0 ok, 1 runtime failure (cannot bind, cannot open the error log),
//! 2 usage or configuration error. Every conf error is reported before anything is
//! bound, so a broken conf never takes a port away from a running instance.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use getopts::Options;

use crate::conf;
use crate::runtime::daemon::{self, Forked, Startup};
use crate::runtime::handover::{Inherited, RestartPlan};
use crate::runtime::control::Outcome;
use crate::runtime::reload::ReloadSource;
use crate::runtime::limits;
use crate::runtime::listener::{Listener, SocketAccess};
use crate::runtime::pidfile::PidFile;
use crate::runtime::privileges;
use crate::runtime::server::Server;
use crate::runtime::signals::Signals;

pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("f", "config", "configuration file (\"-\" reads standard input)", "FILE");
    o.optflag("D", "foreground", "do not go to background (default: go to background once ready; also --no-daemon)");
    o.optflagmulti("t", "test", "test the configuration and exit; -tt also runs pre-flight checks (listeners bindable, bin-path executable, directories writable)");
    o.optflag("p", "print", "print the resolved configuration in lighttpd syntax and exit");
    o.optopt("i", "idle-timeout", "stop gracefully after SECS without client activity (no accept, no traffic)", "SECS");
    o.optflag("1", "one-shot", "serve the one connection on standard input (a socket, as inetd passes it), then exit");
    o.optflag("v", "version", "print the version and exit");
    o.optflag("V", "build-info", "print the version, build features, and the modules and directives implemented, then exit");
    o.optflag("h", "help", "print this help and exit");
    o.optflag("U", "upgrade", "binary upgrade: take over the listeners and open tunnels of the wstund running with this conf (found by its server.control-socket); run with the new binary");
    o.optopt("c", "control", "send COMMAND (reload, status, drain, stop, upgrade) to the wstund listening on SOCKET (server.control-socket)", "SOCKET");
    o
}

fn usage(o: &Options) -> String {
    o.usage(&format!(
        "wstund {} - WebSocket tunnel daemon\n\nUsage: wstund -f FILE [-D] [-U] [-i SECS] [-1] [-t|-tt|-p]\n       wstund -c SOCKET reload|status|drain|stop|upgrade\n       \
         wstund --port N [--bind ADDR] [--staticdir DIR] [--devconsole] [--binary] [--line] [-p] -- PROGRAM ARGS...\n\n\
         Signals: SIGTERM stops now, SIGINT stops gracefully, SIGUSR1 reloads the configuration,\n\
         SIGHUP reopens the logs, SIGUSR2 logs a status dump (see wstund(8)).",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Spellings other tools use for the same options (pure).
fn normalize(args: &[String]) -> Vec<String> {
    args.iter().map(|a| if a == "--no-daemon" { "--foreground".to_string() } else { a.clone() }).collect()
}

/// `-V`: what this binary can do, from the directive table itself.
fn build_info() -> String {
    let mut out = format!("wstund/{} (single-threaded mio event loop)\n\nFeatures:\n", env!("CARGO_PKG_VERSION"));
    for f in [
        "+ IPv4 and IPv6 listeners, unix-domain listeners",
        "+ epoll event loop, signalfd signals",
        "+ permessage-deflate (RFC 7692)",
        "+ spawned backend pools and per-connection stdio programs",
        "+ live reload (SIGUSR1, control socket), binary upgrade handing over listeners and open tunnels (-U, upgrade), and socket activation (LISTEN_FDS)",
        "+ server.max-worker: a supervisor and N worker processes on SO_REUSEPORT listeners",
        "- TLS (terminate it in front of wstund)",
    ] {
        out.push_str(&format!("\t{f}\n"));
    }
    out.push_str("\nModules:\n");
    for m in conf::implemented_modules() {
        out.push_str(&format!("\t{m}\n"));
    }
    let (directives, backend) = conf::implemented_directives();
    out.push_str("\nDirectives:\n");
    for (name, doc) in directives {
        out.push_str(&format!("\t{name:<40} {doc}\n"));
    }
    out.push_str("\nwstunnel.server backend options:\n");
    for (name, doc) in backend {
        out.push_str(&format!("\t{name:<40} {doc}\n"));
    }
    out
}

pub fn main(args: Vec<String>) -> i32 {
    // First, before anything opens a descriptor or starts a child (include_shell):
    // sockets passed by an upgrade or by systemd become close-on-exec.
    let inherited = Inherited::take();
    crate::runtime::notify::init();
    if crate::oneline::wanted(args.get(1..).unwrap_or_default()) {
        return one_line(args.get(1..).unwrap_or_default(), inherited);
    }
    let o = options();
    let m = match o.parse(normalize(&args).iter().skip(1)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("wstund: {e}\n\n{}", usage(&o));
            return EXIT_USAGE;
        }
    };
    if m.opt_present("h") {
        println!("{}", usage(&o));
        return EXIT_OK;
    }
    if m.opt_present("v") {
        println!("wstund/{} (single-threaded mio event loop)", env!("CARGO_PKG_VERSION"));
        return EXIT_OK;
    }
    if m.opt_present("V") {
        print!("{}", build_info());
        return EXIT_OK;
    }
    let idle = match m.opt_str("i").map(|s| s.trim().parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(std::time::Duration::from_secs(n)).filter(|d| !d.is_zero()),
        Some(Err(_)) => {
            eprintln!("wstund: invalid idle timeout value: {:?} (-i SECS)", m.opt_str("i").unwrap_or_default());
            return EXIT_USAGE;
        }
    };
    if let Some(socket) = m.opt_str("c") {
        return match crate::runtime::control::client(&socket, &m.free) {
            Outcome::Done => EXIT_OK,
            Outcome::Failed => EXIT_RUNTIME,
            Outcome::Usage => EXIT_USAGE,
        };
    }
    if !m.free.is_empty() {
        eprintln!("wstund: unexpected argument {:?}\n\n{}", m.free[0], usage(&o));
        return EXIT_USAGE;
    }
    let Some(path) = m.opt_str("f") else {
        eprintln!("wstund: no configuration file given (-f FILE)\n\n{}", usage(&o));
        return EXIT_USAGE;
    };
    let Some(config) = load(&path) else { return EXIT_USAGE };
    if let Some(code) = test_or_print(&m, &config) {
        return code;
    }
    let mut inherited = inherited;
    if m.opt_present("U") && m.opt_present("1") {
        eprintln!("wstund: -U takes over a running daemon; -1 serves one connection: not both");
        return EXIT_USAGE;
    }
    if m.opt_present("U") || inherited.is_restart() {
        // The conf is loaded and checked: only now is the running wstund asked.
        if let Err(e) = take_over_from(&mut inherited, &config, m.opt_present("U")) {
            eprintln!("wstund: upgrade refused: {e}; the running wstund carries on");
            return EXIT_RUNTIME;
        }
    }
    let mode = if m.opt_present("1") {
        Mode::OneShot
    } else {
        Mode::Serve { idle, restart: RestartPlan::from_current(Path::new(&path)) }
    };
    run(config, inherited, mode, m.opt_present("D"))
}

/// A binary upgrade's first step: find the running wstund (`-U`: through the conf's
/// control socket) and check that both speak the same hand-over version.
fn take_over_from(inherited: &mut Inherited, config: &conf::Config, dash_u: bool) -> Result<(), String> {
    let refuse = |inherited: &mut Inherited, why: String| {
        inherited.abandon(&why);
        Err(why)
    };
    if config.server.max_worker > 1 {
        return refuse(inherited, format!("server.max-worker = {}: the binary upgrade hands tunnels over to one process only", config.server.max_worker));
    }
    if dash_u {
        if inherited.is_restart() {
            return refuse(inherited, "-U given to a process started by an upgrade".into());
        }
        let Some(control) = config.server.control_socket.as_deref() else {
            return Err("wstund -U finds the running wstund through server.control-socket, and this conf sets none".into());
        };
        inherited.connect(&absolute(control))?;
    }
    let pid = inherited.greet()?;
    eprintln!("wstund: taking over from pid {pid} (binary upgrade)");
    Ok(())
}

/// The conf, its warnings on standard error; `None` after printing the error.
fn load(path: &str) -> Option<conf::Config> {
    let loaded = match conf::load_file(Path::new(path)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    for w in &loaded.warnings {
        eprintln!("wstund: {w}");
    }
    for w in compliance_warnings(&loaded.config) {
        eprintln!("wstund: warning: {w}");
    }
    Some(loaded.config)
}

/// `-t`, `-tt` and `-p`: the exit status when one of them was asked for.
fn test_or_print(m: &getopts::Matches, config: &conf::Config) -> Option<i32> {
    let tests = m.opt_count("t");
    if tests >= 2 {
        // Under a running instance (the sysv script's reload runs -tt), its ports are
        // in use by it and kept by the reload.
        let running = config.server.pid_file.as_deref().is_some_and(crate::runtime::pidfile::names_live_process);
        let problems = if running { conf::preflight_running(config) } else { conf::preflight(config) };
        for p in &problems {
            eprintln!("{p}");
        }
        if !problems.is_empty() {
            return Some(EXIT_USAGE);
        }
    }
    if tests >= 1 {
        println!("Syntax OK");
        return Some(EXIT_OK);
    }
    if m.opt_present("p") {
        print!("{}", conf::print_config(config));
        let _ = std::io::stdout().flush();
        return Some(EXIT_OK);
    }
    None
}

/// websocketd's one-line start (`oneline.rs`): the flags become conf text, which is
/// printed (`-p`) or loaded and run in the foreground like a file.
fn one_line(args: &[String], inherited: Inherited) -> i32 {
    let parsed = crate::oneline::parse(args).and_then(|o| {
        let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
        let program = crate::oneline::resolve_program(&o.command[0], std::env::var_os("PATH").as_deref(), &cwd)?;
        Ok((o.print, crate::oneline::conf_text(&o, &program)))
    });
    let (print, text) = match parsed {
        Ok(x) => x,
        Err(e) => {
            eprintln!("wstund: {e}");
            return EXIT_USAGE;
        }
    };
    if print {
        print!("{text}");
        let _ = std::io::stdout().flush();
        return EXIT_OK;
    }
    let loaded = match conf::load_str("(command line)", &text) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    for w in &loaded.warnings {
        eprintln!("wstund: {w}");
    }
    let restart = Err("a one-line start has no conf file to read again; start with -f FILE (wstund -p prints one)".to_string());
    run(loaded.config, inherited, Mode::Serve { idle: None, restart }, true)
}

/// How `run` serves.
enum Mode {
    /// Listeners; `-i`; how upgrade restarts (or why it cannot).
    Serve { idle: Option<std::time::Duration>, restart: Result<RestartPlan, String> },
    /// `-1`: the connection on standard input only.
    OneShot,
}

/// The start-up sequence, lighttpd's: descriptor limit, error log, listeners (inherited
/// from an upgrade or systemd, else bound), pid file (all as the starting user,
/// usually root); then the background (unless `-D`, a restart, or `-1`), the privilege
/// drop, the pid, the pools; then "ready". Every failure before "ready" is reported where
/// the operator sees it: the terminal, or the waiting starter process.
fn run(mut config: conf::Config, mut inherited: Inherited, mode: Mode, foreground: bool) -> i32 {
    let Prepared { target, access, conn_limit, mut pid_file } = match prepare(&mut config, &inherited) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wstund: {e}");
            return EXIT_RUNTIME;
        }
    };
    // The descriptor limit is raised now: receive the listeners and tunnels.
    if let Err(e) = inherited.receive() {
        inherited.abandon(&e);
        eprintln!("wstund: upgrade failed: {e}; the running wstund carries on");
        return EXIT_RUNTIME;
    }
    let specs = config.listeners();
    // $SERVER["socket"] conditions compare against the configured spelling.
    let spec_names: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    let one_shot_mode = matches!(mode, Mode::OneShot);
    // `-1` serves one connection: one process.
    let workers = if one_shot_mode { 1 } else { config.server.max_worker.max(1) as usize };
    let (listeners, one_shot) = match open_listeners(&mode, &mut inherited, &specs, config.server.listen_backlog, access, workers > 1) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("wstund: {e}");
            remove_pid_file(pid_file);
            return EXIT_RUNTIME;
        }
    };
    for l in &listeners {
        eprintln!("wstund: listening on {}", l.name());
    }
    // A restarted wstund stays the child the old one waits on; `-1` serves the
    // connection inetd handed it, in the foreground, as lighttpd does.
    // Made absolute now: the daemon moves to `/` before the socket is bound.
    let control_path = config.server.control_socket.as_deref().filter(|_| !one_shot_mode).map(absolute);
    let background = !foreground && !inherited.is_restart() && !one_shot_mode;
    let mut startup = match go_background(background, config.server.errorlog.is_some()) {
        Background::Serve(s) => s,
        // The daemon owns the listeners and the pid file now.
        Background::StarterExits(code) => return code,
        Background::Failed => {
            cleanup(&listeners);
            remove_pid_file(pid_file);
            return EXIT_RUNTIME;
        }
    };
    // As root, before the drop: the socket file is then handed to the run user.
    // A binary upgrade takes the running wstund's control socket when the path is the
    // same, so the path never stops answering.
    let control = match control_path.as_deref().map(|p| match inherited.take_control(p) {
        Some(fd) => crate::runtime::control::ControlSocket::adopt(fd, p).map_err(|e| format!("cannot take over the control socket {}: {e}", p.display())),
        None => crate::runtime::control::ControlSocket::bind(p, target.owner().0, target.owner().1)
            .map_err(|e| format!("cannot open the control socket {}: {e}", p.display())),
    }) {
        Some(Err(reason)) => return fail(&mut startup, &listeners, pid_file, reason),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    if workers > 1 {
        let Mode::Serve { idle, restart } = mode else { return EXIT_RUNTIME };
        // A configured server.max-connections is the daemon's (split between the
        // workers); one derived from the descriptor limit is each process's.
        let configured_conns = match conn_limit {
            limits::ConnLimit::FromFds { .. } => None,
            _ => config.server.max_connections,
        };
        if let Some(note) = conn_limit.note() {
            log::info!("{note} (each worker)");
        }
        let start = WorkersStart { workers, control, control_path, idle, conf_path: restart.ok().map(|p| p.conf), spec_names, configured_conns };
        return supervise(config, listeners, start, &target, startup, pid_file);
    }
    if let Err(reason) = drop_privileges(&target, &mut pid_file) {
        return fail(&mut startup, &listeners, pid_file, reason);
    }
    if let Some(note) = conn_limit.note() {
        log::info!("{note}");
    }
    let control_taken = control_path.is_some() && inherited.is_restart() && !inherited.has_control();
    let mut server = match start_server(config, listeners, spec_names, control) {
        Ok(s) => s,
        Err(reason) => {
            inherited.abandon(&reason);
            return fail(&mut startup, &[], pid_file, reason);
        }
    };
    apply_mode(&mut server, mode, one_shot, target.user.as_ref().map(|u| u.1.clone()));
    if inherited.is_restart() {
        let (tunnels, stayed) = inherited.take_tunnels();
        let t0 = std::time::Instant::now();
        let adopted = server.adopt_moved(tunnels);
        let adopt_us = t0.elapsed().as_micros();
        let taken = adopted.and_then(|n| inherited.commit(n, control_taken).map(|()| n));
        match taken {
            Ok(n) => {
                server.start_moved();
                log::info!("upgrade: took over {n} tunnels (rebuilt and registered in {adopt_us} us); {stayed} stay with the old process until they end");
                eprintln!("wstund: took over {n} tunnels ({stayed} stay with the old process)");
            }
            Err(reason) => {
                inherited.abandon(&reason);
                server.abandon_moved();
                drop(server);
                return fail(&mut startup, &[], None, format!("upgrade failed: {reason}; the running wstund carries on"));
            }
        }
    }
    eprintln!("wstund: ready (pid {})", std::process::id());
    startup.ready();
    crate::runtime::notify::ready();
    serve(server, pid_file)
}

/// What `run` hands the supervisor besides the conf and the listeners.
struct WorkersStart {
    workers: usize,
    control: Option<crate::runtime::control::ControlSocket>,
    control_path: Option<std::path::PathBuf>,
    idle: Option<std::time::Duration>,
    /// Where a worker's reload re-reads the conf (none: a one-line start).
    conf_path: Option<std::path::PathBuf>,
    spec_names: Vec<String>,
    /// `server.max-connections` when the conf sets it (split between the workers).
    configured_conns: Option<u32>,
}

/// `server.max-worker` above 1 (`runtime/supervisor.rs`): as root, the further listener
/// sets and each worker's control socket; then the privilege drop and the pid; then the
/// workers are forked and this process supervises them until they are gone.
fn supervise(
    config: conf::Config,
    listeners: Vec<Listener>,
    start: WorkersStart,
    target: &privileges::Target,
    mut startup: Startup,
    mut pid_file: Option<PidFile>,
) -> i32 {
    use crate::runtime::supervisor::{worker_control_path, Supervisor, WorkerStart};
    let WorkersStart { workers, control, control_path, idle, conf_path, spec_names, configured_conns } = start;
    let sets = match crate::runtime::workers::listener_sets(listeners, workers, config.server.listen_backlog) {
        Ok(s) => s,
        Err(e) => return fail(&mut startup, &[], pid_file, format!("worker listeners: {e}")),
    };
    let mut worker_controls = Vec::with_capacity(workers);
    for i in 0..workers {
        let Some(base) = control_path.as_deref() else {
            worker_controls.push(None);
            continue;
        };
        let p = worker_control_path(base, i);
        match crate::runtime::control::ControlSocket::bind(&p, target.owner().0, target.owner().1) {
            Ok(c) => worker_controls.push(Some((c, p))),
            Err(e) => return fail(&mut startup, &sets[0], pid_file, format!("cannot open the control socket {}: {e}", p.display())),
        }
    }
    if let Err(reason) = drop_privileges(target, &mut pid_file) {
        return fail(&mut startup, &sets[0], pid_file, reason);
    }
    let dropped_to = target.user.as_ref().map(|u| u.1.clone());
    // The unix listeners' files, removed by the supervisor at the end (the sockets
    // themselves go with the supervisor).
    let unix_files: Vec<std::path::PathBuf> =
        sets[0].iter().filter_map(|l| if let Listener::Unix { path, .. } = l { Some(path.clone()) } else { None }).collect();
    let remove_files = || unix_files.iter().for_each(|p| drop(std::fs::remove_file(p)));
    let run_worker = move |w: WorkerStart| -> i32 {
        let mut config = config.clone();
        crate::runtime::workers::apply_shares(&mut config, w.seat.index, w.seat.count);
        if configured_conns.is_some() {
            config.server.max_connections = crate::runtime::workers::share_max_connections(configured_conns, w.seat.index, w.seat.count);
        }
        let number = w.seat.index + 1;
        let mut server = match start_server(config, w.listeners, spec_names.clone(), w.control) {
            Ok(s) => s,
            Err(reason) => {
                log::error!("worker {number}: {reason}");
                return crate::runtime::supervisor::WORKER_START_FAILED;
            }
        };
        if let Some(d) = idle {
            server.set_idle_limit(d);
        }
        if let Some(conf) = &conf_path {
            server.set_reload_source(ReloadSource { conf: conf.clone(), dropped_to: dropped_to.clone() });
        }
        server.set_restart_plan(Err("upgrade is not available with server.max-worker above 1 yet".into()));
        server.set_seat(w.seat);
        log::info!("worker {number} ready (pid {})", std::process::id());
        serve(server, None)
    };
    let mut sup = match Supervisor::new(sets, control, worker_controls, run_worker) {
        Ok(s) => s,
        Err(e) => {
            remove_files();
            return fail(&mut startup, &[], pid_file, format!("cannot start the supervisor: {e}"));
        }
    };
    // Ready before the fork: the workers must not inherit the starter's pipe or the
    // terminal. Clients that come first wait in the listeners' queues.
    eprintln!("wstund: ready (pid {}; supervising {workers} workers)", std::process::id());
    startup.ready();
    crate::runtime::notify::ready();
    let rc = if !sup.start() {
        log::error!("no worker could be started");
        EXIT_RUNTIME
    } else {
        // An upgrade never reaches here: `take_over_from` refuses max-worker above 1.
        match sup.run() {
            Ok(()) if sup.failed() => EXIT_RUNTIME,
            Ok(()) => EXIT_OK,
            Err(e) => {
                log::error!("supervisor loop failed: {e}");
                EXIT_RUNTIME
            }
        }
    };
    drop(sup);
    remove_files();
    crate::runtime::logging::finish();
    remove_pid_file(pid_file);
    rc
}

/// Signals, the loop, the control socket, the pools. On failure what was opened is
/// closed again (dropping the server stops what did start and removes the listeners'
/// files) and the reason is returned.
fn start_server(
    config: conf::Config,
    listeners: Vec<Listener>,
    spec_names: Vec<String>,
    control: Option<crate::runtime::control::ControlSocket>,
) -> Result<Server, String> {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            cleanup(&listeners);
            return Err(format!("cannot set up signal handling: {e}"));
        }
    };
    // The listeners go into the attempt; if it fails their files are left for the next start.
    let mut server = Server::new(Arc::new(config), listeners, spec_names, signals).map_err(|e| format!("cannot start the event loop: {e}"))?;
    if let Some(c) = control {
        server.set_control(c).map_err(|e| format!("cannot watch the control socket: {e}"))?;
    }
    if let Some(reason) = server.start_failure() {
        return Err(format!("cannot start: {reason}"));
    }
    Ok(server)
}

/// What the mode asks of the loop: the `-1` connection to serve, or `-i`, and where a
/// reload re-reads the conf (and the account it runs as by then).
fn apply_mode(server: &mut Server, mode: Mode, one_shot: Option<crate::runtime::oneshot::OneShot>, dropped_to: Option<String>) {
    match (mode, one_shot) {
        (_, Some(c)) => server.adopt(c.listener, c.stream),
        (Mode::Serve { idle, restart }, None) => {
            if let Some(d) = idle {
                server.set_idle_limit(d);
            }
            if let Ok(plan) = &restart {
                server.set_reload_source(ReloadSource { conf: plan.conf.clone(), dropped_to });
            }
            server.set_restart_plan(restart);
        }
        (Mode::OneShot, None) => {}
    }
}

/// The listeners (inherited ones taken over, the rest bound), or for `-1` the one
/// connection on standard input and none.
fn open_listeners(
    mode: &Mode,
    inherited: &mut Inherited,
    specs: &[conf::ListenSpec],
    backlog: u32,
    access: SocketAccess,
    reuse_port: bool,
) -> Result<(Vec<Listener>, Option<crate::runtime::oneshot::OneShot>), String> {
    match mode {
        Mode::OneShot => crate::runtime::oneshot::from_stdin(specs).map(|c| (Vec::new(), Some(c))).map_err(|e| e.to_string()),
        Mode::Serve { .. } => inherited.open(specs, backlog, access, reuse_port).map(|l| (l, None)).map_err(|e| e.to_string()),
    }
}

/// What the start-up works out before it opens a listener.
struct Prepared {
    target: privileges::Target,
    access: SocketAccess,
    conn_limit: limits::ConnLimit,
    pid_file: Option<PidFile>,
}

/// Descriptor limit, logs, connection limit, the account to run as and the unix
/// listeners' owner and mode, and the pid file: everything decided as the starting user
/// before anything is bound.
fn prepare(config: &mut conf::Config, inherited: &Inherited) -> Result<Prepared, String> {
    let fds = limits::apply_fd_limit(config.server.max_fds);
    crate::runtime::logging::init(config)?;
    if let Some(w) = &fds.warning {
        log::warn!("{w}");
    }
    let conn_limit = limits::conn_limit(config.server.max_connections, fds.soft, limits::fds_per_tunnel(config));
    config.server.max_connections = Some(conn_limit.value());
    let root = nix::unistd::geteuid().is_root();
    let target = match privileges::Target::resolve(&config.server).map_err(|e| e.to_string())? {
        t if root => t,
        t => {
            if !t.is_noop() && !t.in_effect() {
                log::warn!("not started as root: server.username, server.groupname and server.chroot are not applied");
            }
            privileges::Target { user: None, gid: None, chroot: None }
        }
    };
    if root && target.user.is_none() {
        log::warn!("{}", privileges::ROOT_WARNING);
    }
    let group = match &config.server.socket_group {
        Some(g) => Some(nix::unistd::Gid::from_raw(conf::accounts::group(g, false).map_err(|e| format!("server.socket-group: {e}"))?)),
        None => target.owner().1,
    };
    let access = SocketAccess { mode: config.server.socket_perms.map(|m| m.0), owner: target.owner().0, group };
    // Before binding, as lighttpd: a second start with the same conf is told about the
    // running one, not about a port in use. A upgrade restart takes over the file that
    // names its parent, the old wstund.
    let predecessor = inherited.predecessor();
    let pid_file = config.server.pid_file.as_deref().map(|p| PidFile::create(p, predecessor)).transpose().map_err(|e| e.to_string())?;
    Ok(Prepared { target, access, conn_limit, pid_file })
}

/// Where this process goes on after [`go_background`].
enum Background {
    /// This process serves (in the foreground, or as the daemon).
    Serve(Startup),
    /// This is the starter: the daemon said "ready" (0) or why it failed (1).
    StarterExits(i32),
    /// The fork failed (said on standard error).
    Failed,
}

/// Goes to the background when asked: fork, setsid, fork; the starter waits for the
/// daemon's "ready" or its reason.
fn go_background(background: bool, has_errorlog: bool) -> Background {
    if !background {
        return Background::Serve(Startup::foreground());
    }
    if !has_errorlog {
        eprintln!("wstund: note: no server.errorlog: once started in the background, the log goes to /dev/null (use -D to keep it on standard error)");
    }
    match daemon::daemonize(has_errorlog) {
        Ok(Forked::Daemon(s)) => Background::Serve(s),
        Ok(Forked::Starter(code)) => Background::StarterExits(code),
        Err(e) => {
            eprintln!("wstund: cannot go to the background: {e}");
            Background::Failed
        }
    }
}

/// chroot, setgroups, setgid, setuid (a no-op unless started as root with an account),
/// then the pid goes into the pid file.
fn drop_privileges(target: &privileges::Target, pid_file: &mut Option<PidFile>) -> Result<(), String> {
    if !target.is_noop() {
        target.apply().map_err(|e| format!("cannot drop privileges: {e}"))?;
        log::info!("{}", privileges::describe(target));
        if target.chroot.is_some() {
            if let Some(p) = pid_file.as_mut() {
                p.keep_path_at_exit();
            }
        }
    }
    if let Some(p) = pid_file.as_mut() {
        p.write_pid(std::process::id()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the loop to its end, then flushes the logs and removes the pid file (unless a
/// upgrade restart handed it, a new file at the same path, to the new process).
fn serve(mut server: Server, pid_file: Option<PidFile>) -> i32 {
    let rc = match server.run() {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error!("event loop failed: {e}");
            EXIT_RUNTIME
        }
    };
    let handed_over = server.handed_over();
    drop(server);
    crate::runtime::logging::finish();
    if !handed_over {
        remove_pid_file(pid_file);
    }
    rc
}

/// A start that failed after the fork: the waiting starter gets the reason.
fn fail(startup: &mut Startup, listeners: &[Listener], pid_file: Option<PidFile>, reason: String) -> i32 {
    startup.failed(&reason);
    cleanup(listeners);
    remove_pid_file(pid_file);
    EXIT_RUNTIME
}

/// `p` from the current directory, when it is relative.
fn absolute(p: &Path) -> std::path::PathBuf {
    std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
}

fn cleanup(listeners: &[Listener]) {
    listeners.iter().for_each(Listener::cleanup);
}

fn remove_pid_file(pid_file: Option<PidFile>) {
    if let Some(p) = pid_file {
        p.remove();
    }
}

/// The testing switches that break RFC 6455 when flipped: say so on every start and -t.
fn compliance_warnings(config: &conf::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |ws: &conf::WsSettings, place: &str| {
        if !ws.require_masked_client_frames {
            out.push(format!("wstunnel.require-masked-client-frames is disabled{place}: unmasked client frames are accepted (not RFC 6455 compliant; for testing only)"));
        }
        if !ws.apply_mask {
            out.push(format!("wstunnel.apply-mask is disabled{place}: masks are not applied (not RFC 6455 compliant; for testing only)"));
        }
        if ws.mask_server_frames {
            out.push(format!("wstunnel.mask-server-frames is enabled{place}: browsers will refuse masked server frames (for testing only)"));
        }
    };
    check(&config.wstunnel, "");
    // Unset fields of a block hold the (compliant) defaults, so this only fires for
    // switches a block really flips.
    for (i, b) in config.blocks.iter().enumerate() {
        check(&b.ws, &format!(" in conditional block {}", i + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_foreground() {
        let args: Vec<String> = ["wstund", "--no-daemon", "-f", "x"].iter().map(|s| s.to_string()).collect();
        let m = options().parse(normalize(&args).iter().skip(1)).unwrap();
        assert!(m.opt_present("D"));
    }

    #[test]
    fn build_info_lists_every_directive() {
        let info = build_info();
        let (directives, backend) = conf::implemented_directives();
        for (name, _) in directives.iter().chain(backend.iter()) {
            assert!(info.contains(name), "{name} missing from -V");
        }
        assert!(info.contains("mod_wstunnel"));
    }
}
