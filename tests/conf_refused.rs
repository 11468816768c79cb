//! Security-weakening lighttpd directives and modules are configuration errors: the
//! real binary's `-t` exits 2 and names the exact file:line:col, at top level, inside
//! conditionals, through `+=`, variables and includes. `server.max-worker` above a
//! program's `max-procs` too (each worker owns a share).
//! Other modules' directives stay one-line warnings; mod_access, mod_auth (tests/auth.rs),
//! mod_extforward and mod_evasive are implemented.
mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

/// Writes `text` to a fresh conf file and runs `wstund -t` on it:
/// (exit code, the first line of stderr that is not an `ignored:` warning, all stderr, path).
fn check(text: &str) -> (Option<i32>, String, String, String) {
    let dir = TempDir::new("refused");
    let path = dir.join("wstund.conf");
    std::fs::write(&path, text).expect("write conf");
    let p = path.display().to_string();
    let out = run_wstund(&["-t", "-f", &p], T);
    let first = out.stderr.lines().find(|l| !l.starts_with("wstund: ignored:")).unwrap_or("").to_string();
    (out.code(), first, out.stderr.clone(), p)
}

/// Real lighttpd directives whose absence would weaken security.
const DIRECTIVES: &[&str] = &[
    // mod_openssl's ssl.engine, ssl.pemfile, ... are implemented (tests/tls.rs); these
    // are not yet, and are errors rather than ignored.
    "ssl.verifyclient.exportcert",
    "ssl.ca-crl-file",
    "gnutls.priority",
    "secdownload.secret",
    "magnet.attract-raw-url-to",
];

/// `server.modules` entries of the same features.
const MODULES: &[&str] = &[
    "mod_gnutls",
    "mod_mbedtls",
    "mod_nss",
    "mod_wolfssl",
    "mod_secdownload",
    "mod_magnet",
];

fn expect_refused(text: &str, line: u32, col: u32, what: &str) {
    let (code, first, all, path) = check(text);
    let want = format!("{path}:{line}:{col}: wstund does not implement {what} (");
    assert!(first.starts_with(&want), "conf:\n{text}\nwant {want:?}\ngot:\n{all}");
    assert_eq!(code, Some(2), "conf:\n{text}\n{all}");
}

#[test]
fn every_security_directive_is_an_error_at_its_position() {
    for d in DIRECTIVES {
        // Top level, after a few spaces so the column is not trivially 1.
        expect_refused(&format!("server.port = 0\n   {d} = \"x\"\n"), 2, 4, d);
        // Inside a conditional, as a lighttpd TLS socket block is written.
        expect_refused(&format!("server.port = 0\n$SERVER[\"socket\"] == \":443\" {{\n\t{d} = \"enable\"\n}}\n"), 3, 2, d);
        // Nested, in an else branch.
        expect_refused(
            &format!("server.port = 0\n$HTTP[\"host\"] == \"a\" {{ }}\nelse {{\n  $HTTP[\"url\"] =^ \"/x\" {{ {d} = ( \"k\" => \"v\" ) }}\n}}\n"),
            4,
            26,
            d,
        );
    }
}

#[test]
fn every_security_module_is_an_error_at_its_name() {
    for m in MODULES {
        expect_refused(&format!("server.port = 0\nserver.modules = ( \"mod_access\", \"{m}\" )\n"), 2, 34, m);
        expect_refused(&format!("server.port = 0\nserver.modules = ( \"mod_access\" )\nserver.modules += ( \"{m}\" )\n"), 3, 21, m);
        // Through a variable: the position is where the name is written.
        expect_refused(&format!("server.port = 0\nvar.mods = ( \"mod_wstunnel\",\n  \"{m}\" )\nserver.modules = var.mods\n"), 3, 3, m);
        expect_refused(&format!("server.port = 0\n$HTTP[\"host\"] == \"h\" {{ server.modules = ( \"{m}\" ) }}\n"), 2, 43, m);
    }
}

#[test]
fn refusal_in_an_included_file_names_that_file() {
    let dir = TempDir::new("refused-inc");
    let inc = dir.join("10-ssl.conf");
    std::fs::write(&inc, "# TLS\n$SERVER[\"socket\"] == \":443\" {\n    ssl.ca-crl-file = \"/x\"\n}\n").expect("write include");
    let main = dir.join("main.conf");
    std::fs::write(&main, "server.port = 0\ninclude \"10-ssl.conf\"\n").expect("write main");
    let out = run_wstund(&["-t", "-f", &main.display().to_string()], T);
    let want = format!("{}:3:5: wstund does not implement ssl.ca-crl-file (TLS); it implements ssl.engine, ssl.pemfile", inc.display());
    assert!(out.stderr.starts_with(&want), "want {want:?}\ngot {}", out.stderr);
    assert_eq!(out.code(), Some(2));
}

#[test]
fn max_worker_above_a_program_cap_is_an_error_other_counts_are_not() {
    let conf = "server.port = 0\nserver.max-worker = 4\n\
                wstunnel.server = ( \"/p\" => (( \"bin-path\" => \"/bin/cat\", \"mode\" => \"stdio\", \"max-procs\" => 3 )) )\n";
    let (code, first, all, path) = check(conf);
    assert!(
        first.starts_with(&format!("{path}:2:21: server.max-worker = 4: wstunnel.server \"/p\" bin-path \"/bin/cat\" has max-procs 3, fewer than the workers")),
        "{all}"
    );
    assert_eq!(code, Some(2));
    for n in [0, 1, 2, 3] {
        let (code, _, all, _) = check(&conf.replace("server.max-worker = 4", &format!("server.max-worker = {n}")));
        assert_eq!(code, Some(0), "max-worker = {n}: {all}");
    }
    let (code, _, all, _) = check("server.port = 0\nserver.max-worker = 8\n");
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn other_modules_stay_warnings_and_mod_access_is_implemented() {
    let (code, _, all, _) = check(
        "server.port = 0\nserver.modules = ( \"mod_access\", \"mod_rewrite\" )\nurl.rewrite-once = ( \"^/a\" => \"/b\" )\n\
         url.access-deny = ( \"~\", \".inc\" )\n$HTTP[\"url\"] =^ \"/admin\" { url.access-allow = ( \"/admin/ws\" ) }\n",
    );
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("wstund: ignored: url.rewrite-once (module mod_rewrite not implemented)"), "{all}");
    assert!(all.contains("wstund: ignored: mod_rewrite in server.modules"), "{all}");
    assert!(!all.contains("access"), "mod_access and its directives are not warned about: {all}");
}
