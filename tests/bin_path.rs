//! `bin-path` quoting, end to end: a table of quoted command lines (and the array form),
//! each with the argv the program receives (printed by the program itself); an
//! unterminated quote is a `-t` error at its position; a quoted bin-path is noted as
//! meaning something else under lighttpd (which splits on whitespace only).

mod common;

use std::time::Duration;

use common::procs::{close_of, stdio, until_close};
use common::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn quoted_command_lines_give_the_argv_a_shell_would() {
    // (bin-path as written in the conf, the arguments after the program's name)
    let cases: &[(&str, &[&str])] = &[
        (r#"/usr/bin/printf [%s] a  b"#, &["a", "b"]),
        (r#"/usr/bin/printf [%s] 'a b' \"c d\""#, &["a b", "c d"]),
        (r#"/usr/bin/printf [%s] 'import pty; pty.spawn(\"/bin/sh\")'"#, &["import pty; pty.spawn(\"/bin/sh\")"]),
        (r#"/usr/bin/printf [%s] \"it's\" '$HOME' *"#, &["it's", "$HOME", "*"]),
        (r#"/usr/bin/printf [%s] pre'fix'\"ed\" ''"#, &["prefixed", ""]),
    ];
    let mut conf = Conf::new();
    for (i, (line, _)) in cases.iter().enumerate() {
        conf = conf.route(&format!("/c{i}"), &[stdio(line, "")]);
    }
    conf = conf.route("/array", &["( \"bin-path\" => ( \"/usr/bin/printf\", \"[%s]\", \"x y\", \"it's\" ), \"mode\" => \"stdio\" )".to_string()]);
    let d = Daemon::start_conf(&conf.set("wstunnel.frame-type", "\"binary\""));
    let argv_of = |path: &str| {
        let mut c = RawClient::handshake(d.port(), path);
        let (out, close) = until_close(&mut c, T);
        assert_eq!(close_of(&close).0, 1000, "{path}: {:?}", String::from_utf8_lossy(&out));
        let s = String::from_utf8(out).unwrap();
        s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).map(|s| s.split("][").map(str::to_string).collect::<Vec<_>>()).unwrap_or_default()
    };
    for (i, (line, want)) in cases.iter().enumerate() {
        assert_eq!(argv_of(&format!("/c{i}")), want.to_vec(), "{line}");
    }
    assert_eq!(argv_of("/array"), vec!["x y", "it's"]);
    assert!(d.logs().contains("lighttpd would split it on whitespace only"), "{}", d.logs());
}

#[test]
fn an_unterminated_quote_is_a_check_error_at_its_position() {
    let dir = TempDir::new("binpath");
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, "server.port = 0\nwstunnel.server = ( \"/a\" => ( ( \"bin-path\" => \"/bin/sh -c 'echo hi\", \"mode\" => \"stdio\" ) ) )\n").unwrap();
    let out = run_wstund(&["-t", "-f", conf.to_str().unwrap()], T);
    assert_eq!(out.code(), Some(2), "{}", out.all());
    let col = "wstunnel.server = ( \"/a\" => ( ( \"bin-path\" => \"/bin/sh -c '".len();
    assert!(out.all().contains(&format!("bad.conf:2:{col}: bin-path: unterminated ' quote")), "{}", out.all());
}
