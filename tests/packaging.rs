//! Installing wstund as an operator does: the manual pages lint-clean (mandoc, man), the systemd unit and socket (`systemd-analyze
//! verify` silent, `security` ≤ 3.0), shellcheck on the shell scripts, `make install
//! DESTDIR=` (the file list; the installed conf passes `-tt`), and the Debian package
//! (root only): built from the tree, installed with `dpkg -i`, the sysv script's exit
//! codes, a daemon running as user wstund that serves on the conf's port, `dpkg -r`
//! leaving no process.
//!
//! The release build for `make install` and the package goes to `target/pkg` (cargo
//! holds `target/` while the suite runs).
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Runs `script` with `sh -c` in the repository; exit code and stdout+stderr.
fn sh(script: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(repo_root()).output().expect("sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn have(tool: &str) -> bool {
    sh(&format!("command -v {tool} >/dev/null 2>&1")).0 == 0
}

/// A tool the test needs: on a machine without it the test fails when CI asks for it
/// (scripts/test.sh installs it and sets WSTUND_REQUIRE_SYSTEMD), else it is skipped.
fn need(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(std::env::var_os("WSTUND_REQUIRE_SYSTEMD").is_none(), "{tool} missing (scripts/test.sh installs it)");
    eprintln!("skipped: {tool} not installed");
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One release build at a time (make install and the package share it).
static BUILD: Mutex<()> = Mutex::new(());

fn pkg_target() -> PathBuf {
    repo_root().join("target/pkg")
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if !need("shellcheck") {
        return;
    }
    // The scripts an operator runs: no finding at all.
    let (rc, out) = sh("shellcheck scripts/wstund.init scripts/package.sh scripts/test.sh debian/wstund.postinst debian/wstund.postrm");
    assert_eq!(rc, 0, "shellcheck:\n{out}");
    // Every other script in scripts/: no error (the benchmarks keep some warnings).
    let (rc, out) = sh("shellcheck -S error -s bash scripts/*.sh scripts/bench/*.sh");
    assert_eq!(rc, 0, "shellcheck -S error:\n{out}");
}

#[test]
fn man_pages_are_lint_clean() {
    if !need("mandoc") || !need("man") {
        return;
    }
    for page in ["man/wstund.8", "man/wstund.conf.5"] {
        let (rc, out) = sh(&format!("mandoc -Tlint {page}"));
        assert!(rc == 0 && out.trim().is_empty(), "mandoc -Tlint {page} (exit {rc}):\n{out}");
        let (rc, out) = sh(&format!("MANWIDTH=80 man --warnings -l {page} 2>&1 >/dev/null"));
        assert!(rc == 0 && out.trim().is_empty(), "man --warnings -l {page} (exit {rc}):\n{out}");
    }
}

/// The unit with the binary under test in place of /usr/sbin/wstund, and a MANPATH
/// holding the two pages (verify checks `Documentation=man:` links with man(1)).
fn units_for_verify(dir: &Path) -> (PathBuf, PathBuf, String) {
    for (sec, page) in [("8", "wstund.8"), ("5", "wstund.conf.5")] {
        let d = dir.join(format!("man/man{sec}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(repo_root().join("man").join(page), d.join(page)).unwrap();
    }
    let unit = std::fs::read_to_string(repo_root().join("scripts/wstund.service")).unwrap().replace("/usr/sbin/wstund", BIN);
    let service = dir.join("wstund.service");
    std::fs::write(&service, unit).unwrap();
    let socket = dir.join("wstund.socket");
    std::fs::copy(repo_root().join("scripts/wstund.socket"), &socket).unwrap();
    (service, socket, dir.join("man").display().to_string())
}

#[test]
fn systemd_unit_and_socket_verify_clean_and_security_at_most_3() {
    if !need("systemd-analyze") {
        return;
    }
    let dir = TempDir::new("units");
    let (service, socket, manpath) = units_for_verify(dir.path());
    let (rc, out) = sh(&format!("MANPATH={manpath} systemd-analyze verify {} {}", service.display(), socket.display()));
    assert_eq!(rc, 0, "systemd-analyze verify:\n{out}");
    assert!(out.trim().is_empty(), "systemd-analyze verify warns:\n{out}");
    let (rc, out) = sh(&format!("systemd-analyze security --offline=true --no-pager {}", service.display()));
    assert_eq!(rc, 0, "systemd-analyze security:\n{out}");
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for wstund.service:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{out}");
    eprintln!("systemd-analyze security: wstund.service exposure {score}");
}

#[test]
fn make_install_destdir_installs_the_expected_files_and_the_conf_passes_tt() {
    if !need("make") {
        return;
    }
    let _b = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("destdir");
    let dest = dir.join("root");
    let (rc, out) = sh(&format!("make install DESTDIR={} PREFIX=/usr CARGO_TARGET_DIR={}", dest.display(), pkg_target().display()));
    assert_eq!(rc, 0, "make install:\n{out}");
    let (_, list) = sh(&format!("cd {} && find . \\( -type f -o -type d -empty \\) | sort", dest.display()));
    let want = [
        "./etc/default/wstund",
        "./etc/init.d/wstund",
        "./etc/logrotate.d/wstund",
        "./etc/wstund/conf.d",
        "./etc/wstund/wstund.conf",
        "./lib/systemd/system/wstund.service",
        "./lib/systemd/system/wstund.socket",
        "./usr/sbin/wstund",
        "./usr/share/man/man5/wstund.conf.5.gz",
        "./usr/share/man/man8/wstund.8.gz",
    ];
    assert_eq!(list.lines().collect::<Vec<_>>(), want, "installed files");
    let bin = dest.join("usr/sbin/wstund");
    let (_, file) = sh(&format!("file {}", bin.display()));
    assert!(!file.contains("with debug_info") && file.contains("stripped") && !file.contains("not stripped"), "{file}");
    let (rc, page) = sh(&format!("gzip -dc {}/usr/share/man/man8/wstund.8.gz | head -c 200", dest.display()));
    assert!(rc == 0 && page.contains(".TH"), "wstund.8.gz is not a gzipped page: {page}");
    // The installed conf, its paths moved under the tree: -tt passes (the conf.d
    // include, the pid-file and log directories checked).
    let etc = dest.join("etc/wstund");
    std::fs::create_dir_all(dest.join("run/wstund")).unwrap();
    std::fs::create_dir_all(dest.join("var/log/wstund")).unwrap();
    std::fs::write(etc.join("conf.d/10-test.conf"), "server.tag = \"from-conf.d\"\n").unwrap();
    let conf = std::fs::read_to_string(etc.join("wstund.conf"))
        .unwrap()
        .replace("/run/", &format!("{}/run/", dest.display()))
        .replace("/var/log/", &format!("{}/var/log/", dest.display()))
        .replace("server.port     = 8080", &format!("server.port     = {}", refused_port()));
    std::fs::write(etc.join("wstund.conf"), conf).unwrap();
    let (rc, out) = sh(&format!("{} -tt -f {}/wstund.conf", bin.display(), etc.display()));
    assert_eq!(rc, 0, "wstund -tt on the installed conf:\n{out}");
    let (_, printed) = sh(&format!("{} -p -f {}/wstund.conf", bin.display(), etc.display()));
    assert!(printed.contains("from-conf.d"), "conf.d/*.conf not included:\n{printed}");
    assert!(printed.contains("server.username = \"wstund\""), "{printed}");
    let (rc, out) = sh(&format!("make uninstall DESTDIR={} PREFIX=/usr", dest.display()));
    assert_eq!(rc, 0, "make uninstall:\n{out}");
    let (_, left) = sh(&format!("cd {} && find . -type f | sort", dest.display()));
    // The edited conf and the operator's conf.d file stay.
    assert_eq!(left.lines().collect::<Vec<_>>(), ["./etc/wstund/conf.d/10-test.conf", "./etc/wstund/wstund.conf"]);
}

/// Processes whose executable is `exe`.
fn pids_of(exe: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if p.to_string_lossy().trim_end_matches(" (deleted)") == exe {
                out.push(pid);
            }
        }
    }
    out
}

fn uid_of(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse().ok()
}

/// An /echo tunnel (the shipped conf's /bin/cat route): upgrade, echo, close.
fn echo(port: u16) -> bool {
    std::panic::catch_unwind(|| {
        let mut c = RawClient::handshake(port, "/echo");
        c.send_frame(OP_TEXT, b"hi");
        assert_eq!(c.read_data(2, Duration::from_secs(5)).0, b"hi");
        c.send_close(1000);
    })
    .is_ok()
}

/// Runs `dpkg_cmd` with invoke-rc.d's policy answering `policy` (101: forbidden, 0:
/// allowed). A policy-rc.d the machine already has is covered by a bind mount in a
/// mount namespace of this command's own, so it is left untouched; without one, a
/// forbidding one is created for the command and removed after.
/// dpkg waits for the lock when another apt or dpkg holds it (up to 5 minutes).
fn with_policy(dir: &Path, policy: i32, dpkg_cmd: &str) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (rc, out) = with_policy_once(dir, policy, dpkg_cmd);
        if rc == 0 || !out.contains("lock") || std::time::Instant::now() > deadline {
            return (rc, out);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn with_policy_once(dir: &Path, policy: i32, dpkg_cmd: &str) -> (i32, String) {
    let script = dir.join(format!("policy-{policy}"));
    std::fs::write(&script, format!("#!/bin/sh\nexit {policy}\n")).unwrap();
    sh(&format!("chmod 755 {0}; export DEBIAN_FRONTEND=noninteractive; p=/usr/sbin/policy-rc.d; \
         if [ -e $p ]; then unshare -m sh -c \"mount --bind {0} $p && {1}\"; \
         elif [ {policy} = 0 ]; then {1}; \
         else cp {0} $p; rc=0; {1} || rc=$?; rm -f $p; exit $rc; fi", script.display(), dpkg_cmd))
}

/// Removes the package however the test ends.
struct Purge;
impl Drop for Purge {
    fn drop(&mut self) {
        let _ = sh("/etc/init.d/wstund stop >/dev/null 2>&1; dpkg --purge wstund >/dev/null 2>&1");
    }
}

#[test]
fn deb_package_installs_runs_as_wstund_with_lsb_exit_codes_and_removes_cleanly() {
    if !is_root() || !have("dpkg") {
        eprintln!("skipped: needs root and dpkg");
        return;
    }
    if !need("dh") || !need("lintian") {
        return;
    }
    let installed = sh("dpkg-query -W -f '${Status}' wstund 2>/dev/null").1;
    assert!(!installed.contains("install ok installed"), "a wstund package is already installed on this machine");
    let _b = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("deb");
    let (rc, out) = sh(&format!("CARGO_TARGET_DIR={} scripts/package.sh {}", pkg_target().display(), dir.path().display()));
    assert_eq!(rc, 0, "scripts/package.sh (lintian errors fail it):\n{out}");
    let deb = out.lines().find(|l| l.starts_with('/') && l.ends_with(".deb")).unwrap_or("").to_string();
    assert!(deb.ends_with(".deb"), "{out}");
    let (_, conffiles) = sh(&format!("dpkg-deb --ctrl-tarfile {deb} | tar -xOf - ./conffiles"));
    for f in ["/etc/wstund/wstund.conf", "/etc/default/wstund", "/etc/init.d/wstund", "/etc/logrotate.d/wstund"] {
        assert!(conffiles.lines().any(|l| l == f), "{f} not a conffile:\n{conffiles}");
    }

    let _purge = Purge;
    // Installing must not start it on the shipped port (8080 may be taken here): a
    // policy-rc.d forbids starts during dpkg -i, then the test picks a free port.
    let (rc, out) = with_policy(dir.path(), 101, &format!("dpkg -i {deb}"));
    assert_eq!(rc, 0, "dpkg -i:\n{out}");
    assert!(sh("getent passwd wstund").0 == 0, "postinst did not create the user wstund");
    let uid: u32 = sh("id -u wstund").1.trim().parse().expect("uid of wstund");
    let port = refused_port();
    let (rc, out) = sh(&format!("sed -i 's/^server.port .*/server.port = {port}/' /etc/wstund/wstund.conf"));
    assert_eq!(rc, 0, "{out}");

    let init = |action: &str| sh(&format!("/etc/init.d/wstund {action}"));
    let (rc, out) = init("status");
    assert_eq!(rc, 3, "status before start:\n{out}");
    let (rc, out) = init("start");
    assert_eq!(rc, 0, "start:\n{out}");
    let pids = pids_of("/usr/sbin/wstund");
    assert_eq!(pids.len(), 1, "one wstund after start: {pids:?}\n{out}");
    assert_eq!(uid_of(pids[0]), Some(uid), "the daemon does not run as user wstund");
    let pid_file = std::fs::read_to_string("/run/wstund/wstund.pid").unwrap_or_default();
    assert_eq!(pid_file.trim(), pids[0].to_string(), "pid file");
    assert!(echo(port), "no tunnel on the conf's port {port}");
    let (rc, out) = init("start");
    assert_eq!(rc, 0, "start when running:\n{out}");
    assert_eq!(pids_of("/usr/sbin/wstund"), pids, "a second start started another daemon");
    let (rc, out) = init("status");
    assert_eq!(rc, 0, "status when running:\n{out}");
    let (rc, out) = init("configtest");
    assert_eq!(rc, 0, "configtest:\n{out}");
    let (rc, out) = init("bogus");
    assert_eq!(rc, 2, "unknown action:\n{out}");

    // reload: SIGUSR1, the live reload in the same process (still user wstund).
    let (rc, out) = init("reload");
    assert_eq!(rc, 0, "reload:\n{out}");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string("/var/log/wstund/error.log")
            .unwrap_or_default()
            .contains("configuration reloaded")),
        "no reload in the error log:\n{}",
        std::fs::read_to_string("/var/log/wstund/error.log").unwrap_or_default()
    );
    assert_eq!(pids_of("/usr/sbin/wstund"), pids, "a reload keeps the process");
    assert!(echo(port), "no tunnel after reload");
    let (rc, out) = init("status");
    assert_eq!(rc, 0, "status after reload:\n{out}");

    // A broken conf: configtest and reload say so (6), the daemon serves on.
    sh("cp /etc/wstund/wstund.conf /tmp/wstund-pkg-test.conf && echo 'server.bogus-directive = 1' >> /etc/wstund/wstund.conf");
    let (rc, out) = init("reload");
    assert_eq!(rc, 6, "reload with a broken conf:\n{out}");
    let (rc, _) = init("configtest");
    assert_eq!(rc, 6);
    sh("mv /tmp/wstund-pkg-test.conf /etc/wstund/wstund.conf");
    assert!(echo(port), "a refused reload stopped the service");

    let (rc, out) = init("stop");
    assert_eq!(rc, 0, "stop:\n{out}");
    assert!(pids_of("/usr/sbin/wstund").is_empty(), "wstund still running after stop");
    let (rc, out) = init("status");
    assert_eq!(rc, 3, "status after stop:\n{out}");
    let (rc, out) = init("stop");
    assert_eq!(rc, 0, "stop when stopped:\n{out}");
    let (rc, out) = init("reload");
    assert_eq!(rc, 7, "reload when stopped:\n{out}");
    let (rc, out) = init("restart");
    assert_eq!(rc, 0, "restart:\n{out}");
    assert!(echo(port), "no tunnel after restart");

    // dpkg -r stops it (prerm) and leaves no process.
    // prerm's invoke-rc.d must be allowed to stop it (a machine's own policy-rc.d may
    // forbid every action).
    let (rc, out) = with_policy(dir.path(), 0, "dpkg -r wstund");
    assert_eq!(rc, 0, "dpkg -r:\n{out}");
    assert!(wait_until(Duration::from_secs(5), || pids_of("/usr/sbin/wstund").is_empty()), "a wstund survived dpkg -r");
    let (rc, out) = with_policy(dir.path(), 0, "dpkg --purge wstund");
    assert_eq!(rc, 0, "dpkg --purge:\n{out}");
    assert!(!Path::new("/etc/wstund/wstund.conf").exists(), "purge left the conf");
}
