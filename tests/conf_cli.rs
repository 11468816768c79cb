//! The configuration through the `wstund` command line: `-t`, `-tt`, `-p`, `-f -`, the
//! error format (`file:line:col: message`, source line, caret), warnings, includes, and
//! the shipped and lighttpd configuration corpus.
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// Runs `wstund ARGS` with optional standard input, extra environment and working
/// directory; killed (and the test failed) after [`T`].
fn run(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)], cwd: Option<&Path>) -> RunOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .env("RUST_LOG_STYLE", "never");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn wstund");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        let text = text.to_string();
        thread::spawn(move || {
            let _ = w.write_all(text.as_bytes());
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wstund {args:?} still running after {T:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    RunOutput { status, stdout, stderr }
}

fn wstund(args: &[&str]) -> RunOutput {
    run(args, None, &[], None)
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// A TCP port on 127.0.0.1 held by the test for as long as the listener lives.
fn hold_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().unwrap().port();
    (l, p)
}

fn assert_syntax_ok(out: &RunOutput, what: &str) {
    assert_eq!(out.code(), Some(0), "{what}: {}", out.all());
    assert_eq!(out.stdout, "Syntax OK\n", "{what}: stdout");
    assert!(!out.all().contains("listening on"), "{what} must not bind: {}", out.all());
}

/// One configuration error: the files to write (the first is passed to -f), and where
/// the error must point: file, line, the text the caret must stand under, and a part of
/// the message.
struct ErrCase {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    at_file: &'static str,
    at_line: usize,
    caret_at: &'static str,
    msg: &'static str,
}

fn err_case(name: &'static str, main: &str, line: usize, caret_at: &'static str, msg: &'static str) -> ErrCase {
    ErrCase { name, files: vec![("main.conf", main.to_string())], at_file: "main.conf", at_line: line, caret_at, msg }
}

#[test]
fn each_error_class_points_at_its_position_and_binds_nothing() {
    let (_held, port) = hold_port();
    let head = format!("server.bind = \"127.0.0.1\"\nserver.port = {port}\n");
    let m = |rest: &str| format!("{head}{rest}");
    let cases = vec![
        err_case("type mismatch", &m("wstunnel.ping-interval = \"often\"\n"), 3, "\"often\"", "expected integer"),
        err_case("out of range", &m("wstunnel.ping-size = 200\n"), 3, "200", "out of range 4..125"),
        err_case(
            "unknown wstunnel directive",
            &m("wstunnel.frame-typ = \"binary\"\n"),
            3,
            "wstunnel.frame-typ",
            "unknown directive wstunnel.frame-typ; did you mean wstunnel.frame-type?",
        ),
        err_case("unknown server directive", &m("server.max-conections = 5\n"), 3, "server.max-conections", "did you mean server.max-connections?"),
        err_case(
            "duplicate =",
            &m("wstunnel.debug = 1\n# again\nwstunnel.debug = 2\n"),
            5,
            "wstunnel.debug",
            "duplicate assignment to wstunnel.debug (first set at ",
        ),
        err_case("unterminated string", &m("server.tag = \"wstund\n\n"), 3, "\"wstund", "unterminated string"),
        err_case("bad regex", &m("$HTTP[\"url\"] =~ \"^/(ws\" {\n}\n"), 3, "\"^/(ws\"", "invalid regular expression"),
        err_case("include not found", &m("include \"missing.conf\"\n"), 3, "\"missing.conf\"", "include file not found"),
        err_case(
            "bin_path spelling",
            &m("wstunnel.server = ( \"/\" => ( ( \"bin_path\" => \"/bin/cat\", \"mode\" => \"stdio\" ) ) )\n"),
            3,
            "\"bin_path\"",
            "did you mean \"bin-path\"?",
        ),
        err_case("unset env", &m("var.x = env.WSTUND_TEST_SURELY_UNSET_VARIABLE\n"), 3, "env.", "environment variable WSTUND_TEST_SURELY_UNSET_VARIABLE is not set"),
        err_case("include_shell failure", &m("include_shell \"echo oops >&2; exit 3\"\n"), 3, "include_shell", "failed with exit status 3: oops"),
        err_case("unknown condition field", &m("\t$HTTP[\"hots\"] == \"x\" { }\n"), 3, "\"hots\"", "did you mean \"host\"?"),
        err_case(
            "nested block error",
            &m("$HTTP[\"host\"] == \"a\" {\n    $HTTP[\"url\"] =^ \"/\" {\n        wstunnel.frame-type = \"binray\"\n    }\n}\n"),
            5,
            "\"binray\"",
            "wstunnel.frame-type",
        ),
        ErrCase {
            name: "include cycle",
            files: vec![
                ("main.conf", m("include \"inc/a.conf\"\n")),
                ("inc/a.conf", "# a\ninclude \"b.conf\"\n".into()),
                ("inc/b.conf", "include \"../main.conf\"\n".into()),
            ],
            at_file: "inc/b.conf",
            at_line: 1,
            caret_at: "include",
            msg: "include cycle: ",
        },
        ErrCase {
            name: "error in an included file",
            files: vec![("main.conf", m("include \"sub/*.conf\"\n")), ("sub/10-ok.conf", "wstunnel.debug = 1\n".into()), ("sub/20-bad.conf", "\n  wstunnel.debug = 2\n".into())],
            at_file: "sub/20-bad.conf",
            at_line: 2,
            caret_at: "wstunnel.debug",
            msg: "duplicate assignment to wstunnel.debug",
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let dir = TempDir::new("err");
        let mut paths = Vec::new();
        for (name, text) in &c.files {
            paths.push(write(&dir, name, text));
        }
        let at_path = dir.join(c.at_file).to_string_lossy().into_owned();
        let text = &c.files.iter().find(|(n, _)| *n == c.at_file).unwrap().1;
        let src_line = text.lines().nth(c.at_line - 1).expect("line in file");
        let col = src_line.find(c.caret_at).unwrap_or_else(|| panic!("{}: {:?} not in line {src_line:?}", c.name, c.caret_at)) + 1;
        let caret: String = src_line.chars().take(col - 1).map(|ch| if ch == '\t' { '\t' } else { ' ' }).collect();
        let headline = format!("{at_path}:{}:{col}: ", c.at_line);
        // -t checks; a plain start must refuse the same way before binding (the port is
        // held by this test, so any bind attempt would fail with a different message).
        for args in [vec!["-t", "-f", &paths[0]], vec!["-D", "-f", &paths[0]]] {
            let out = wstund(&args);
            let lines: Vec<&str> = out.stderr.lines().collect();
            let found = lines.iter().position(|l| l.starts_with(&headline));
            let problem = match found {
                _ if out.code() != Some(2) => Some(format!("exit {:?}", out.code())),
                None => Some(format!("no line starting with {headline:?}")),
                Some(i) if !lines[i].contains(c.msg) => Some(format!("message lacks {:?}", c.msg)),
                Some(i) if lines.get(i + 1) != Some(&format!("    {src_line}").as_str()) => Some("source line missing".into()),
                Some(i) if lines.get(i + 2) != Some(&format!("    {caret}^").as_str()) => Some("caret misplaced".into()),
                _ if out.all().contains("listening on") || out.all().contains("in use") => Some("it bound".into()),
                _ if out.stdout.contains("Syntax OK") => Some("said Syntax OK".into()),
                _ => None,
            };
            if let Some(p) = problem {
                failures.push(format!("[{}] wstund {:?}: {p}\n{}", c.name, &args[..args.len() - 1], out.all()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} checks failed:\n{}", failures.len(), cases.len() * 2, failures.join("\n"));
    // Still ours: nothing took it over.
    drop(_held);
}

/// `wstund -t` on `text` (written to `name` in `dir`) exits 2 with `file:line:col:
/// message...` naming `msg`, and returns how long it took.
fn fails_at(dir: &TempDir, name: &str, text: &str, line: usize, col: usize, msg: &str) -> Duration {
    let path = write(dir, name, text);
    let t = Instant::now();
    let out = wstund(&["-t", "-f", &path]);
    let took = t.elapsed();
    assert_eq!(out.code(), Some(2), "{name}: {}", out.all());
    let headline = format!("{path}:{line}:{col}: ");
    let first = out.stderr.lines().find(|l| l.starts_with(&headline));
    assert!(first.is_some_and(|l| l.contains(msg)), "{name}: want {headline}...{msg:?}, got:\n{}", out.stderr);
    assert!(!out.stdout.contains("Syntax OK"), "{name}: {}", out.all());
    took
}

/// Work a configuration makes at load time is bounded: an endless `include_shell`
/// command is stopped at the size limit, and doubling a value with `+=` stops at the
/// value limits, each at once (before the memory is used), exit 2, at its position.
#[test]
fn unbounded_conf_work_fails_fast_at_its_position() {
    let dir = TempDir::new("bound");
    let doubling = |init: &str| {
        let mut s = format!("server.port = 0\nvar.a = {init}\n");
        for _ in 0..40 {
            s.push_str("var.a += var.a\n");
        }
        s
    };
    let cases = [
        ("yes.conf", "server.port = 0\ninclude_shell \"yes\"\n".to_string(), 2, 1, "include_shell \"yes\": output exceeds 16 MiB"),
        ("str.conf", doubling("\"x\""), 23, 10, "would make a string of 2097152 bytes; strings are limited to 1 MiB"),
        ("list.conf", doubling("( \"x\" )"), 17, 10, "list entries; a value may hold at most 16384"),
    ];
    for (name, text, line, col, msg) in cases {
        let took = fails_at(&dir, name, &text, line, col, msg);
        assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
    }
}

/// A command that does not finish (here: the shell exits, but a background child holds
/// its output open) is stopped after 10 s, background child included. The one slow test.
#[test]
fn include_shell_times_out_and_kills_its_process_group() {
    let dir = TempDir::new("shto");
    let cmd = "sleep 30 & echo $! > bg.pid; echo 'var.x = 1'";
    let text = format!("server.port = 0\n  include_shell \"{cmd}\"\n");
    let took = fails_at(&dir, "to.conf", &text, 2, 3, &format!("include_shell \"{cmd}\": did not finish within 10 s"));
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(15), "took {took:?}");
    let pid = std::fs::read_to_string(dir.join("bg.pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    // Gone, or a zombie waiting for init: either way no longer running.
    let running = || std::fs::read_to_string(&stat).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'));
    while running() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(), "background child {} of the include_shell command survived", pid.trim());
}

#[test]
fn syntax_ok_binds_nothing_and_creates_nothing() {
    let dir = TempDir::new("ok");
    let (held, port) = hold_port();
    let sock = dir.join("extra.sock");
    let pid = dir.join("wstund.pid");
    let log = dir.join("error.log");
    let conf = format!(
        "server.bind = \"127.0.0.1\"\nserver.port = {port}\nserver.pid-file = \"{pid}\"\nserver.errorlog = \"{log}\"\n\
         $SERVER[\"socket\"] == \"{sock}\" {{ }}\n\
         wstunnel.server = ( \"/ws/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9 ) ) )\n",
        pid = pid.display(),
        log = log.display(),
        sock = sock.display()
    );
    let path = write(&dir, "w.conf", &conf);
    let out = wstund(&["-t", "-f", &path]);
    assert_syntax_ok(&out, "-t");
    assert!(!sock.exists() && !pid.exists() && !log.exists(), "-t created files: {:?}", std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>());

    // -tt tries the listeners: the held port is reported, exit 2.
    let out = wstund(&["-tt", "-f", &path]);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", out.stderr);
    assert!(!out.stdout.contains("Syntax OK"), "{}", out.all());

    // Released: -tt passes and leaves neither the unix socket nor a probe file behind.
    drop(held);
    let out = wstund(&["-tt", "-f", &path]);
    assert_syntax_ok(&out, "-tt");
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, vec![PathBuf::from(&path)], "-tt left files behind");
    // And the port is free again for anyone.
    TcpListener::bind(("127.0.0.1", port)).expect("port still free after -t/-tt");
}

#[test]
fn preflight_failures_exit_2() {
    let dir = TempDir::new("tt");
    let plain = dir.join("not-exec.sh");
    std::fs::write(&plain, "#!/bin/sh\nexec cat\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exec = dir.join("exec.sh");
    std::fs::write(&exec, "#!/bin/sh\nexec cat\n").unwrap();
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_held, taken) = hold_port();
    let backend = |bin: &Path| format!("( \"bin-path\" => \"{}\", \"mode\" => \"stdio\" )", bin.display());
    let cases: Vec<(&str, String, String)> = vec![
        (
            "port already taken",
            format!("server.bind = \"127.0.0.1\"\nserver.port = {taken}\n"),
            format!("cannot listen on 127.0.0.1:{taken}"),
        ),
        (
            "second listener taken",
            format!("server.bind = \"127.0.0.1\"\nserver.port = 0\n$SERVER[\"socket\"] == \"127.0.0.1:{taken}\" {{ }}\n"),
            format!("cannot listen on 127.0.0.1:{taken}"),
        ),
        (
            "bin-path not executable",
            format!("server.bind = \"127.0.0.1\"\nserver.port = 0\nwstunnel.server = ( \"/\" => ( {} ) )\n", backend(&plain)),
            format!("bin-path {}: not executable", plain.display()),
        ),
        (
            "bin-path missing, in a conditional",
            format!(
                "server.bind = \"127.0.0.1\"\nserver.port = 0\n$HTTP[\"url\"] =^ \"/x\" {{\n  wstunnel.server = ( \"/\" => ( {} ) )\n}}\n",
                backend(&dir.join("nope"))
            ),
            format!("bin-path {}", dir.join("nope").display()),
        ),
        (
            "unix listener directory missing",
            format!("server.bind = \"{}/no/such/dir/w.sock\"\n", dir.path().display()),
            "cannot create unix socket".to_string(),
        ),
    ];
    for (name, conf, want) in &cases {
        let path = write(&dir, "tt.conf", conf);
        let t = wstund(&["-t", "-f", &path]);
        assert_syntax_ok(&t, &format!("{name}: -t (no pre-flight)"));
        let tt = wstund(&["-tt", "-f", &path]);
        assert_eq!(tt.code(), Some(2), "{name}: {}", tt.all());
        assert!(tt.stderr.contains(want.as_str()), "{name}: expected {want:?} in:\n{}", tt.stderr);
        assert!(!tt.stdout.contains("Syntax OK"), "{name}: {}", tt.all());
    }
    let ok = write(&dir, "ok.conf", &format!("server.bind = \"127.0.0.1\"\nserver.port = 0\nwstunnel.server = ( \"/\" => ( {} ) )\n", backend(&exec)));
    assert_syntax_ok(&wstund(&["-tt", "-f", &ok]), "-tt with an executable bin-path");
}

/// A configuration using most of the language: includes (glob + shell), variables, env,
/// `+=`, `:=`, nested conditionals, else-chains, captures.
fn rich_conf(dir: &TempDir) -> String {
    write(dir, "conf.d/10-routes.conf", "wstunnel.server += ( \"/b/\" => ( ( \"socket\" => var.sockdir + \"/b.sock\" ) ) )\n");
    write(dir, "conf.d/20-timeouts.conf", "wstunnel.ping-interval = 7\ninclude \"more/inner.conf\"\n");
    write(dir, "conf.d/30-override.conf", "wstunnel.ping-interval := 9\n");
    write(dir, "conf.d/more/inner.conf", "wstunnel.origins = ( \"https://\" + var.site )\n");
    write(dir, "conf.d/notes.txt", "this is not { a conf\n");
    let main = "server.bind = \"127.0.0.1\"\n\
        server.port = 0 + 0\n\
        server.modules = ( \"mod_wstunnel\" )\n\
        var.sockdir = env.WSTUND_TEST_SOCKDIR\n\
        var.site = \"example.org\"\n\
        wstunnel.subprotocols = ( \"binary\", \"base64\" )\n\
        wstunnel.server = ( \"/a/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9000 + 1 ) ) )\n\
        include \"conf.d/*.conf\"\n\
        include_shell \"printf 'wstunnel.debug = %d\\n' 3\"\n\
        $HTTP[\"host\"] =~ \"^(\\w+)\\.example\\.org$\" {\n\
        \x20   wstunnel.server = ( \"/\" => ( ( \"socket\" => var.sockdir + \"/%1.sock\" ) ) )\n\
        \x20   $HTTP[\"url\"] =^ \"/bin/\" {\n\
        \x20       wstunnel.frame-type = \"binary\"\n\
        \x20   }\n\
        \x20   else $HTTP[\"url\"] =$ \".txt\" {\n\
        \x20       wstunnel.frame-type = \"text\"\n\
        \x20   }\n\
        }\n\
        elsif $REQUEST_HEADER[\"X-Tenant\"] == \"gold\" {\n\
        \x20   wstunnel.subprotocols += ( \"gold\" )\n\
        }\n\
        else {\n\
        \x20   wstunnel.balance = \"round-robin\"\n\
        }\n";
    write(dir, "main.conf", main)
}

#[test]
fn print_is_complete_and_parses_back_through_stdin() {
    let dir = TempDir::new("p");
    let main = rich_conf(&dir);
    let env = [("WSTUND_TEST_SOCKDIR", "/run/wst")];
    let first = run(&["-p", "-f", &main], None, &env, None);
    assert_eq!(first.code(), Some(0), "{}", first.all());
    let p = &first.stdout;
    for want in [
        // includes expanded, in sorted order (30- overrides 20- with :=), nested include
        // relative to the including file, include_shell output, `+` evaluated
        "wstunnel.ping-interval = 9\n",
        "wstunnel.origins = ( \"https://example.org\" )\n",
        "wstunnel.debug = 3\n",
        "\"port\" => 9001",
        "server.port = 0\n",
        // variables and env substituted
        "\"socket\" => \"/run/wst/b.sock\"",
        "\"socket\" => \"/run/wst/%1.sock\"",
        // defaults written out
        "wstunnel.ping-size = 4\n",
        "server.listen-backlog = 1024\n",
        "wstunnel.frame-type = \"text\"\n",
        // conditionals kept, with their else-chains
        "$HTTP[\"host\"] =~ ",
        "else $REQUEST_HEADER[\"X-Tenant\"] == \"gold\" {",
        "wstunnel.subprotocols = ( \"binary\", \"base64\", \"gold\" )",
    ] {
        assert!(p.contains(want), "-p output lacks {want:?}:\n{p}");
    }
    // (mod_setenv's directive names contain "env." too.)
    let unset = p.replace("setenv.", "");
    for gone in ["var.", "env.", "include \"", "include_shell", "%d"] {
        assert!(!unset.contains(gone), "-p output still has {gone:?}:\n{p}");
    }
    // The printed configuration is self-contained: checked from stdin in another
    // directory without the environment variable, it passes and prints the same again.
    let elsewhere = TempDir::new("p2");
    let t = run(&["-t", "-f", "-"], Some(p), &[], Some(elsewhere.path()));
    assert_syntax_ok(&t, "-t -f - on the -p output");
    let second = run(&["-p", "-f", "-"], Some(p), &[], Some(elsewhere.path()));
    assert_eq!(second.code(), Some(0), "{}", second.all());
    assert_eq!(&second.stdout, p, "-p of the -p output differs");
}

#[test]
fn stdin_config_errors_and_relative_includes() {
    let dir = TempDir::new("stdin");
    write(&dir, "inc/part.conf", "wstunnel.debug = 5\n");
    // Relative includes of a conf read from stdin resolve against the working directory.
    let out = run(&["-p", "-f", "-"], Some("server.port = 0\ninclude \"inc/part.conf\"\n"), &[], Some(dir.path()));
    assert_eq!(out.code(), Some(0), "{}", out.all());
    assert!(out.stdout.contains("wstunnel.debug = 5\n"), "{}", out.stdout);
    // Errors in stdin are reported with the name <stdin>.
    let out = run(&["-t", "-f", "-"], Some("server.port = 0\n\nwstunnel.pingg-interval = 1\n"), &[], None);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(
        out.stderr.starts_with("<stdin>:3:1: unknown directive wstunnel.pingg-interval; did you mean wstunnel.ping-interval?\n    wstunnel.pingg-interval = 1\n    ^"),
        "{}",
        out.stderr
    );
    let out = run(&["-t", "-f", "-"], Some(""), &[], None);
    assert_syntax_ok(&out, "-t on an empty stdin");
}

#[test]
fn warnings_are_printed_once_on_t() {
    let dir = TempDir::new("warn");
    let conf = "server.bind = \"127.0.0.1\"\nserver.port = 0\n\
        server.modules = ( \"mod_access\", \"mod_wstunnel\", \"mod_frobnicate\" )\n\
        server.modules += ( \"mod_access\" )\n\
        server.range-requests = \"enable\"\n\
        accesslog.filename = \"/dev/null\"\n\
        expire.url = ( \"/x\" => \"access plus 1 days\" )\n\
        $HTTP[\"url\"] =^ \"/a\" { accesslog.filename = \"/dev/null\" expire.url = ( \"/y\" => \"access plus 2 days\" ) }\n\
        $HTTP[\"url\"] =^ \"/b\" { accesslog.filename = \"/dev/null\" }\n\
        wstunnel.server = ( \"/\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9, \"check-local\" => \"disable\" ) ) )\n";
    let path = write(&dir, "w.conf", conf);
    let out = wstund(&["-t", "-f", &path]);
    assert_syntax_ok(&out, "-t with ignored directives");
    let expected = [
        "wstund: ignored: server.range-requests (module mod_staticfile not implemented)",
        "wstund: ignored: accesslog.filename inside a conditional (server-wide directive; only the global value is used)",
        "wstund: ignored: expire.url (module mod_expire not implemented)",
        "wstund: ignored: mod_frobnicate in server.modules (module not implemented)",
        "wstund: ignored: wstunnel.server backend option \"check-local\" (not used by wstund)",
    ];
    for w in expected {
        assert_eq!(out.stderr.lines().filter(|l| *l == w).count(), 1, "{w:?} exactly once in:\n{}", out.stderr);
    }
    assert_eq!(out.stderr.lines().count(), expected.len(), "unexpected extra output:\n{}", out.stderr);
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf")).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// `-t` passes, and `-p` output fed back on stdin passes and prints the same.
fn check_and_round_trip(f: &Path) -> Result<(), String> {
    let path = f.to_string_lossy();
    let t = wstund(&["-t", "-f", &path]);
    if t.code() != Some(0) || t.stdout != "Syntax OK\n" {
        return Err(format!("{path}: -t: {}", t.all()));
    }
    let p1 = wstund(&["-p", "-f", &path]);
    if p1.code() != Some(0) {
        return Err(format!("{path}: -p: {}", p1.all()));
    }
    let t2 = run(&["-t", "-f", "-"], Some(&p1.stdout), &[], None);
    if t2.code() != Some(0) || t2.stdout != "Syntax OK\n" {
        return Err(format!("{path}: -t of the -p output: {}\n--- printed ---\n{}", t2.all(), p1.stdout));
    }
    let p2 = run(&["-p", "-f", "-"], Some(&p1.stdout), &[], None);
    if p2.code() != Some(0) || p2.stdout != p1.stdout {
        return Err(format!("{path}: -p of the -p output differs:\n--- first ---\n{}\n--- second ---\n{}", p1.stdout, p2.all()));
    }
    Ok(())
}

/// A multi-line string inside a conditional, and inside a nested one, prints back as
/// written: `-p` of the `-p` output is byte-identical (it used to gain an indent after
/// each newline on every round trip).
#[test]
fn print_round_trip_keeps_multi_line_strings_in_blocks() {
    let dir = TempDir::new("pml");
    let conf = "server.port = 0\n\
        $HTTP[\"url\"] =^ \"/a\" {\n\
        \x20 wstunnel.server = ( \"/a\" => ( ( \"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\",\n\
        \x20   \"bin-environment\" => ( \"X\" => \"line1\nline2\" ) ) ) )\n\
        \x20 $HTTP[\"host\"] == \"h\" {\n\
        \x20   wstunnel.server = ( \"/b\" => ( ( \"host\" => \"127.0.0.1\", \"port\" => 9, \"check-send\" => \"l1\n  l2\n\" ) ) )\n\
        \x20 }\n\
        }\n";
    let path = write(&dir, "ml.conf", conf);
    check_and_round_trip(Path::new(&path)).unwrap();
    let p = wstund(&["-p", "-f", &path]).stdout;
    assert!(p.contains("\"line1\nline2\"") && p.contains("\"l1\n  l2\n\""), "strings changed:\n{p}");
}

#[test]
fn shipped_configurations_pass() {
    let root = repo_root();
    let top = conf_files(&root.join("conf"));
    let examples = conf_files(&root.join("conf/examples"));
    assert!(!top.is_empty(), "conf/ has no *.conf");
    assert!(!examples.is_empty(), "conf/examples/ has no *.conf");
    let wstunnel = conf_files(&root.join("tests/data/conf"));
    assert!(!wstunnel.is_empty(), "tests/data/conf/ has no *.conf");
    let errors: Vec<String> = top.iter().chain(&examples).chain(&wstunnel).filter_map(|f| check_and_round_trip(f).err()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// Debian's lighttpd configuration (scripts/test.sh and CI copy /etc/lighttpd/lighttpd.conf
/// and conf-available/*.conf into tests/data/lighttpd/). Required when
/// WSTUND_REQUIRE_LIGHTTPD_CORPUS=1, skipped when absent otherwise.
#[test]
fn lighttpd_corpus_through_the_binary() {
    let required = std::env::var("WSTUND_REQUIRE_LIGHTTPD_CORPUS").is_ok_and(|v| v == "1");
    let files = conf_files(&repo_root().join("tests/data/lighttpd"));
    if files.is_empty() {
        assert!(!required, "WSTUND_REQUIRE_LIGHTTPD_CORPUS=1 but tests/data/lighttpd/ has no *.conf files");
        eprintln!("skipping: tests/data/lighttpd/ is empty (set WSTUND_REQUIRE_LIGHTTPD_CORPUS=1 to require it)");
        return;
    }
    let main = files.iter().find(|f| f.ends_with("lighttpd.conf")).expect("lighttpd.conf in tests/data/lighttpd/");
    check_and_round_trip(main).unwrap_or_else(|e| panic!("{e}"));
    let t = wstund(&["-t", "-f", &main.to_string_lossy()]);
    assert!(t.stderr.contains("wstund: ignored: server.upload-dirs (lighttpd core option not implemented)"), "{}", t.stderr);
    assert!(!t.stderr.contains("server.document-root"), "mod_staticfile is implemented: {}", t.stderr);
    // Files that load a module wstund refuses must fail with exit 2;
    // tests/conf_corpus.rs checks their exact positions. 10-ssl.conf names a certificate
    // the package does not install: exit 2 naming it (or 0 where it exists).
    // 05-auth.conf and 11-extforward.conf load modules that are implemented: they pass.
    const REFUSED: &[&str] = &[];
    let errors: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let out = wstund(&["-t", "-f", &f.to_string_lossy()]);
            let ok = if f.ends_with("10-ssl.conf") && !std::path::Path::new("/etc/lighttpd/server.pem").exists() {
                out.code() == Some(2) && out.stderr.contains("ssl.pemfile \"/etc/lighttpd/server.pem\": cannot read")
            } else if REFUSED.iter().any(|n| f.ends_with(n)) {
                out.code() == Some(2) && out.stderr.contains(": wstund does not implement mod_")
            } else {
                out.code() == Some(0) && out.stdout == "Syntax OK\n"
            };
            (!ok).then(|| format!("{}: {}", f.display(), out.all()))
        })
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn lighttpd_value_rules_through_the_binary() {
    // Rules of lighttpd's configparser that real configurations rely on.
    let conf = "server.bind = \"127.0.0.1\"\n\
        base = 8000\n\
        server.port = base + 80\n\
        server.tag = 2 + \"x\" + base\n\
        wstunnel.map-extensions = ( \".a\" => \".ws\" ) + ( \".a\" => \".ws\", \".b\" => \".ws\" )\n\
        wstunnel.origins = ( \"https://a\" )\n\
        wstunnel.origins += ( \"https://b\" )\n\
        $HTTP[\"url\"] =^ \"/x\" { wstunnel.origins += ( \"https://c\" ) }\n\
        $HTTP[\"url\"] =^ \"/y\" { wstunnel.origins := ( \"https://d\" ) }\n";
    let out = run(&["-p", "-f", "-"], Some(conf), &[], None);
    assert_eq!(out.code(), Some(0), "{}", out.all());
    for want in [
        "server.port = 8080\n",
        "server.tag = \"2x8000\"\n",
        "wstunnel.map-extensions = ( \".a\" => \".ws\", \".b\" => \".ws\" )\n",
        "\nwstunnel.origins = ( \"https://a\", \"https://b\" )\n",
        "    wstunnel.origins = ( \"https://a\", \"https://b\", \"https://c\" )\n",
        "    wstunnel.origins = ( \"https://d\" )\n",
    ] {
        assert!(out.stdout.contains(want), "-p lacks {want:?}:\n{}", out.stdout);
    }
    assert_eq!(out.stderr, "", "a bare name is a variable, not an unknown directive");
    // A key merged twice with different values is an error, as in lighttpd.
    let bad = "wstunnel.map-extensions = ( \".a\" => \".ws\" ) + ( \".a\" => \".wss\" )\n";
    let out = run(&["-t", "-f", "-"], Some(bad), &[], None);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    let col = bad.rfind("\".a\"").unwrap() + 1;
    assert!(out.stderr.starts_with(&format!("<stdin>:1:{col}: duplicate key \".a\" when merging lists")), "{}", out.stderr);
}
