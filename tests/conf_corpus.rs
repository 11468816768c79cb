//! Corpus tests: every configuration we ship or promise to read loads, and
//! `print_config` output loads back to an equal configuration.

use std::path::{Path, PathBuf};

use wstund::conf::{load_file, load_str, print_config, BackendAddr, Loaded, RequestFacts};

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(conf_files(&p));
        } else if p.extension().is_some_and(|x| x == "conf") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Loads `path`, prints it, loads the print and requires equality.
fn load_and_round_trip(path: &Path) -> Loaded {
    let loaded = load_file(path).unwrap_or_else(|e| panic!("{}", e));
    let printed = print_config(&loaded.config);
    let name = format!("{} (printed)", path.display());
    let again = load_str(&name, &printed).unwrap_or_else(|e| panic!("{}\n--- printed ---\n{}", e, printed));
    assert_eq!(loaded.config, again.config, "{} does not survive print + load:\n{}", path.display(), printed);
    assert_eq!(print_config(&again.config), printed, "printing is not stable for {}", path.display());
    loaded
}

fn req(path: &str, host: Option<&str>) -> RequestFacts<'static> {
    let path: &'static str = Box::leak(path.to_string().into_boxed_str());
    let host: Option<&'static str> = host.map(|h| &*Box::leak(h.to_string().into_boxed_str()));
    RequestFacts { url_path: path, query: "", host, method: "GET", scheme: "http", remote_ip: None, headers: &[], server_socket: "0.0.0.0:8080", remote_user: None }
}

#[test]
fn mod_wstunnel_examples() {
    let files = conf_files(&manifest("tests/data/conf"));
    assert!(files.len() >= 4, "missing examples: {:?}", files);
    for f in &files {
        load_and_round_trip(f);
    }

    let basic = load_file(&manifest("tests/data/conf/wstunnel-basic.conf")).unwrap().config;
    let ws = basic.resolve(&req("/websocket/x", None));
    let route = ws.servers.find("/websocket/x").expect("the \"\" key matches every path");
    assert_eq!(route.backends[0].addr, BackendAddr::Tcp { host: "127.0.0.1".into(), port: 8081 });
    assert!(basic.resolve(&req("/other", None)).servers.find("/other").is_none());

    let vhosts = load_file(&manifest("tests/data/conf/wstunnel-vhosts.conf")).unwrap().config;
    let listeners: Vec<String> = vhosts.listeners().iter().map(|l| l.to_string()).collect();
    assert_eq!(listeners, vec!["0.0.0.0:8080", "0.0.0.0:8443"]);
    let app = vhosts.resolve(&req("/", Some("billing.apps.example.org")));
    assert_eq!(app.servers.find("/").unwrap().backends[0].addr.to_string(), "unix:/tmp/billing.sock");
    let other = vhosts.resolve(&req("/echo", Some("x.example.net")));
    assert!(other.servers.find("/echo").unwrap().backends[0].bin_path.as_deref() == Some("/bin/cat"));
}

#[test]
fn repository_conf_directory() {
    let files = conf_files(&manifest("conf"));
    assert!(!files.is_empty(), "conf/ has no *.conf files");
    for f in &files {
        let l = load_and_round_trip(f);
        if f.ends_with("examples/lighttpd-compat.conf") {
            // mod_staticfile and mod_indexfile are implemented: honoured, not warned about.
            assert!(!l.warnings.iter().any(|w| w.contains("document-root") || w.contains("index-file") || w.contains("mimetype")), "{:?}", l.warnings);
            assert_eq!(l.config.wstunnel.document_root, "/var/www/html");
            // mod_accesslog is implemented: its directives and module entry pass silently.
            assert!(!l.warnings.iter().any(|w| w.contains("accesslog")), "{:?}", l.warnings);
        }
    }
}

/// Debian's stock files that load a module wstund refuses (wstund.conf(5), REFUSED
/// DIRECTIVES): each must fail `-t` with exit 2 at exactly this position, naming the
/// module. Every other file of the corpus must pass `-t` and survive `-p`.
const REFUSED_IN_CORPUS: &[(&str, u32, u32, &str)] = &[
];

/// Runs the real binary's `-t` on `path`: (exit code, stderr's first line).
fn check_with_binary(path: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wstund"))
        .arg("-t")
        .arg("-f")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run wstund -t: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.starts_with("wstund: ignored:")).unwrap_or("").to_string();
    (out.status.code(), first)
}

/// Debian's lighttpd configuration (CI copies /etc/lighttpd/lighttpd.conf and
/// conf-available/*.conf into tests/data/lighttpd/). Required when
/// WSTUND_REQUIRE_LIGHTTPD_CORPUS=1, skipped when absent otherwise.
#[test]
fn debian_lighttpd_corpus() {
    let required = std::env::var("WSTUND_REQUIRE_LIGHTTPD_CORPUS").is_ok_and(|v| v == "1");
    let files = conf_files(&manifest("tests/data/lighttpd"));
    if files.is_empty() {
        assert!(!required, "WSTUND_REQUIRE_LIGHTTPD_CORPUS=1 but tests/data/lighttpd/ has no *.conf files");
        eprintln!("skipping: tests/data/lighttpd/ is empty (set WSTUND_REQUIRE_LIGHTTPD_CORPUS=1 to require it)");
        return;
    }
    if required {
        assert!(files.iter().any(|f| f.ends_with("lighttpd.conf")), "lighttpd.conf missing from {:?}", files);
        for (name, ..) in REFUSED_IN_CORPUS {
            assert!(files.iter().any(|f| f.ends_with(name)), "{name} missing from the corpus {:?}", files);
        }
    }
    if required {
        assert!(files.iter().any(|f| f.ends_with("10-ssl.conf")), "10-ssl.conf missing from the corpus {:?}", files);
    }
    for f in &files {
        let refused = REFUSED_IN_CORPUS.iter().find(|(name, ..)| f.ends_with(name));
        let (code, first) = check_with_binary(f);
        // 10-ssl.conf (from lighttpd-mod-openssl, which scripts/test.sh installs) enables
        // TLS on :443 with the global ssl.pemfile /etc/lighttpd/server.pem, which the
        // package does not create: -t names that file at its line, or passes if it exists.
        if f.ends_with("10-ssl.conf") {
            if Path::new("/etc/lighttpd/server.pem").exists() {
                assert_eq!(code, Some(0), "{}: {first}", f.display());
            } else {
                let want = format!("{}:8:15: TLS on 0.0.0.0:443: ssl.pemfile \"/etc/lighttpd/server.pem\": cannot read", f.display());
                assert!(first.starts_with(&want), "{}: -t said {first:?}, want {want:?}", f.display());
                assert_eq!(code, Some(2), "{}: {first}", f.display());
            }
            continue;
        }
        match refused {
            Some((_, line, col, module)) => {
                let e = load_file(f).err().unwrap_or_else(|| panic!("{} loaded, but it loads {module}", f.display()));
                assert_eq!((e.line, e.col), (*line, *col), "{}", e);
                let want = format!("{}:{}:{}: wstund does not implement {module} (", f.display(), line, col);
                assert!(first.starts_with(&want), "{}: -t said {first:?}, want {want:?}", f.display());
                assert_eq!(code, Some(2), "{}: {first}", f.display());
            }
            None => {
                assert_eq!(code, Some(0), "{} fails -t: {first}", f.display());
                let l = load_and_round_trip(f);
                if f.ends_with("lighttpd.conf") {
                    assert!(l.warnings.iter().any(|w| w.starts_with("ignored: server.upload-dirs")), "{:?}", l.warnings);
                    assert_eq!(l.config.wstunnel.document_root, "/var/www/html");
                    assert!(l.config.wstunnel.mimetype_assign.iter().any(|(k, v)| k == ".html" && v == "text/html"), "Debian's create-mime.conf.pl");
                    // Debian's url.access-deny = ( "~", ".inc" ) is honoured, not ignored.
                    assert!(!l.warnings.iter().any(|w| w.contains("url.access-deny")), "{:?}", l.warnings);
                    assert_eq!(l.config.wstunnel.access_deny, vec!["~".to_string(), ".inc".to_string()]);
                }
            }
        }
    }
}
