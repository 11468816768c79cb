//! Command line: parse options, load and check the conf, bind, run.
//!
//! Exit codes: 0 ok, 1 runtime failure (cannot bind, cannot open the error log),
//! 2 usage or configuration error. Every conf error is reported before anything is
//! bound, so a broken conf never takes a port away from a running instance.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use getopts::Options;

use crate::conf::{self, ListenSpec};
use crate::runtime::listener::Listener;
use crate::runtime::server::Server;
use crate::runtime::signals::Signals;

pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("f", "config", "configuration file (\"-\" reads standard input)", "FILE");
    o.optflag("D", "foreground", "do not go to background (wstund always runs in the foreground for now; use systemd or start-stop-daemon to detach)");
    o.optflagmulti("t", "test", "test the configuration and exit; -tt also runs pre-flight checks (listeners bindable, bin-path executable, directories writable)");
    o.optflag("p", "print", "print the resolved configuration in lighttpd syntax and exit");
    o.optflag("v", "version", "print the version and exit");
    o.optflag("h", "help", "print this help and exit");
    o
}

fn usage(o: &Options) -> String {
    o.usage(&format!(
        "wstund {} - WebSocket tunnel daemon\n\nUsage: wstund -f FILE [-D] [-t|-tt|-p]",
        env!("CARGO_PKG_VERSION")
    ))
}

pub fn main(args: Vec<String>) -> i32 {
    let o = options();
    let m = match o.parse(args.iter().skip(1)) {
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
    run(config)
}

fn run(config: conf::Config) -> i32 {
    raise_fd_limit(config.server.max_fds);
    if let Err(e) = crate::runtime::logging::init(&config) {
        eprintln!("wstund: {e}");
        return EXIT_RUNTIME;
    }
    let mut listeners = Vec::new();
    let specs = config.listeners();
    // $SERVER["socket"] conditions compare against the configured spelling.
    let spec_names: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    for spec in specs {
        let l = match &spec {
            ListenSpec::Tcp(sa) => Listener::bind_tcp(*sa),
            ListenSpec::Unix(p) => Listener::bind_unix(p),
        };
        match l {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("wstund: {e}");
                for l in &listeners {
                    l.cleanup();
                }
                return EXIT_RUNTIME;
            }
        }
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wstund: cannot set up signal handling: {e}");
            return EXIT_RUNTIME;
        }
    };
    let pid_file = config.server.pid_file.clone();
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("wstund: cannot write pid file {}: {e}", p.display());
            return EXIT_RUNTIME;
        }
    }
    for l in &listeners {
        eprintln!("wstund: listening on {}", l.name());
    }
    let mut server = match Server::new(Arc::new(config), listeners, spec_names, signals) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wstund: cannot start the event loop: {e}");
            return EXIT_RUNTIME;
        }
    };
    eprintln!("wstund: ready (pid {})", std::process::id());
    let rc = match server.run() {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error!("event loop failed: {e}");
            EXIT_RUNTIME
        }
    };
    drop(server);
    crate::runtime::logging::finish();
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
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

/// lighttpd's `server.max-fds`, or else as many descriptors as the hard limit allows:
/// each tunnel needs two.
fn raise_fd_limit(max_fds: Option<u32>) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = max_fds.map(u64::from).unwrap_or(hard).min(hard);
        if want != soft {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
                eprintln!("wstund: cannot set the descriptor limit to {want}: {e}");
            }
        }
    }
}
