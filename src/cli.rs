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
    o
}

fn usage(o: &Options) -> String {
    o.usage(&format!(
        "wstund {} - WebSocket tunnel daemon\n\nUsage: wstund -f FILE [-D] [-i SECS] [-1] [-t|-tt|-p]\n       \
         wstund --port N [--bind ADDR] [--staticdir DIR] [--devconsole] [--binary] [--line] [-p] -- PROGRAM ARGS...\n\n\
         Signals: SIGTERM stops now, SIGINT stops gracefully, SIGUSR1 restarts gracefully,\n\
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
        "+ graceful restart (SIGUSR1) and socket activation (LISTEN_FDS)",
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
    // sockets passed by a SIGUSR1 restart or by systemd become close-on-exec.
    let inherited = Inherited::take();
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
    if !m.free.is_empty() {
        eprintln!("wstund: unexpected argument {:?}\n\n{}", m.free[0], usage(&o));
        return EXIT_USAGE;
    }
    let Some(path) = m.opt_str("f") else {
        eprintln!("wstund: no configuration file given (-f FILE)\n\n{}", usage(&o));
        return EXIT_USAGE;
    };
    let loaded = match conf::load_file(Path::new(&path)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    for w in &loaded.warnings {
        eprintln!("wstund: {w}");
    }
    let config = loaded.config;
    for w in compliance_warnings(&config) {
        eprintln!("wstund: warning: {w}");
    }
    let tests = m.opt_count("t");
    if tests >= 2 {
        let problems = conf::preflight(&config);
        for p in &problems {
            eprintln!("{p}");
        }
        if !problems.is_empty() {
            return EXIT_USAGE;
        }
    }
    if tests >= 1 {
        println!("Syntax OK");
        return EXIT_OK;
    }
    if m.opt_present("p") {
        print!("{}", conf::print_config(&config));
        let _ = std::io::stdout().flush();
        return EXIT_OK;
    }
    let mode = if m.opt_present("1") {
        Mode::OneShot
    } else {
        Mode::Serve { idle, restart: RestartPlan::from_current(Path::new(&path)) }
    };
    run(config, inherited, mode, m.opt_present("D"))
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
    /// Listeners; `-i`; how SIGUSR1 restarts (or why it cannot).
    Serve { idle: Option<std::time::Duration>, restart: Result<RestartPlan, String> },
    /// `-1`: the connection on standard input only.
    OneShot,
}

/// The start-up sequence, lighttpd's: descriptor limit, error log, listeners (inherited
/// from a SIGUSR1 restart or systemd, else bound), pid file (all as the starting user,
/// usually root); then the background (unless `-D`, a restart, or `-1`), the privilege
/// drop, the pid, the pools; then "ready". Every failure before "ready" is reported where
/// the operator sees it: the terminal, or the waiting starter process.
fn run(mut config: conf::Config, mut inherited: Inherited, mode: Mode, foreground: bool) -> i32 {
    let fds = limits::apply_fd_limit(config.server.max_fds);
    if let Err(e) = crate::runtime::logging::init(&config) {
        eprintln!("wstund: {e}");
        return EXIT_RUNTIME;
    }
    if let Some(w) = &fds.warning {
        log::warn!("{w}");
    }
    let conn_limit = limits::conn_limit(config.server.max_connections, fds.soft, limits::fds_per_tunnel(&config));
    config.server.max_connections = Some(conn_limit.value());
    let root = nix::unistd::geteuid().is_root();
    let target = match privileges::Target::resolve(&config.server) {
        Ok(t) if root => t,
        Ok(t) => {
            if !t.is_noop() {
                log::warn!("not started as root: server.username, server.groupname and server.chroot are not applied");
            }
            privileges::Target { user: None, gid: None, chroot: None }
        }
        Err(e) => {
            eprintln!("wstund: {e}");
            return EXIT_RUNTIME;
        }
    };
    if root && target.user.is_none() {
        log::warn!("{}", privileges::ROOT_WARNING);
    }
    let access = SocketAccess {
        mode: config.server.socket_perms.map(|m| m.0),
        owner: target.owner().0,
        group: match &config.server.socket_group {
            Some(g) => match conf::accounts::group(g, false) {
                Ok(gid) => Some(nix::unistd::Gid::from_raw(gid)),
                Err(e) => {
                    eprintln!("wstund: server.socket-group: {e}");
                    return EXIT_RUNTIME;
                }
            },
            None => target.owner().1,
        },
    };
    // Before binding, as lighttpd: a second start with the same conf is told about the
    // running one, not about a port in use. A SIGUSR1 restart takes over the file that
    // names its parent, the old wstund.
    let predecessor = inherited.is_restart().then(|| nix::unistd::getppid().as_raw());
    let mut pid_file = match config.server.pid_file.as_deref().map(|p| PidFile::create(p, predecessor)).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wstund: {e}");
            return EXIT_RUNTIME;
        }
    };
    let specs = config.listeners();
    // $SERVER["socket"] conditions compare against the configured spelling.
    let spec_names: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    let cleanup = |listeners: &[Listener]| listeners.iter().for_each(Listener::cleanup);
    let one_shot_mode = matches!(mode, Mode::OneShot);
    let mut one_shot = None;
    let opened = match mode {
        Mode::OneShot => crate::runtime::oneshot::from_stdin(&specs).map(|c| {
            one_shot = Some(c);
            Vec::new()
        }).map_err(|e| e.to_string()),
        Mode::Serve { .. } => inherited.open(&specs, config.server.listen_backlog, access).map_err(|e| e.to_string()),
    };
    let listeners = match opened {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wstund: {e}");
            if let Some(p) = pid_file {
                p.remove();
            }
            return EXIT_RUNTIME;
        }
    };
    for l in &listeners {
        eprintln!("wstund: listening on {}", l.name());
    }
    let mut startup = Startup::foreground();
    // A restarted wstund stays the child the old one waits on; `-1` serves the
    // connection inetd handed it, in the foreground, as lighttpd does.
    if !foreground && !inherited.is_restart() && !one_shot_mode {
        if config.server.errorlog.is_none() {
            eprintln!("wstund: note: no server.errorlog: once started in the background, the log goes to /dev/null (use -D to keep it on standard error)");
        }
        match daemon::daemonize(config.server.errorlog.is_some()) {
            Ok(Forked::Daemon(s)) => startup = s,
            Ok(Forked::Starter(code)) => return code,
            Err(e) => {
                eprintln!("wstund: cannot go to the background: {e}");
                cleanup(&listeners);
                if let Some(p) = pid_file {
                    p.remove();
                }
                return EXIT_RUNTIME;
            }
        }
    }
    let fail = |startup: &mut Startup, listeners: &[Listener], pid_file: Option<PidFile>, reason: String| {
        startup.failed(&reason);
        cleanup(listeners);
        if let Some(p) = pid_file {
            p.remove();
        }
        EXIT_RUNTIME
    };
    if !target.is_noop() {
        if let Err(e) = target.apply() {
            return fail(&mut startup, &listeners, pid_file, format!("cannot drop privileges: {e}"));
        }
        log::info!("{}", privileges::describe(&target));
        if target.chroot.is_some() {
            if let Some(p) = pid_file.as_mut() {
                p.keep_path_at_exit();
            }
        }
    }
    if let Some(p) = pid_file.as_mut() {
        if let Err(e) = p.write_pid(std::process::id()) {
            return fail(&mut startup, &listeners, pid_file, e.to_string());
        }
    }
    if let Some(note) = conn_limit.note() {
        log::info!("{note}");
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(&mut startup, &listeners, pid_file, format!("cannot set up signal handling: {e}")),
    };
    let mut server = match Server::new(Arc::new(config), listeners, spec_names, signals) {
        Ok(s) => s,
        // The listeners went into the attempt; their files are left for the next start.
        Err(e) => return fail(&mut startup, &[], pid_file, format!("cannot start the event loop: {e}")),
    };
    if let Some(reason) = server.start_failure().map(str::to_string) {
        // Dropping the server stops what did start and removes the listeners' files.
        drop(server);
        return fail(&mut startup, &[], pid_file, format!("cannot start: {reason}"));
    }
    match (mode, one_shot) {
        (_, Some(c)) => server.adopt(c.listener, c.stream),
        (Mode::Serve { idle, restart }, None) => {
            if let Some(d) = idle {
                server.set_idle_limit(d);
            }
            server.set_restart_plan(restart);
        }
        (Mode::OneShot, None) => {}
    }
    if inherited.is_restart() {
        eprintln!("wstund: taking over from pid {} (SIGUSR1 restart)", nix::unistd::getppid());
    }
    eprintln!("wstund: ready (pid {})", std::process::id());
    startup.ready();
    inherited.notify_ready();
    let rc = match server.run() {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error!("event loop failed: {e}");
            EXIT_RUNTIME
        }
    };
    // After SIGUSR1 the pid file (same path, a new file) names the new process.
    let handed_over = server.handed_over();
    drop(server);
    crate::runtime::logging::finish();
    if let Some(p) = pid_file {
        if !handed_over {
            p.remove();
        }
    }
    rc
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
