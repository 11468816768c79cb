//! The shipped browser terminal (`examples/terminal/index.html`, xterm.js from npm) in
//! headless Chromium against a `"mode" => "pty"` route running `/bin/sh -i`, the page
//! served by wstund's static files from the same origin: the page as shipped, with a test script appended that waits for the prompt, types
//! `echo hello-$((6*7))` through xterm.js (as keystrokes reach `onData`), reads `hello-42`
//! from the terminal buffer, resizes the terminal (xterm.js's `onResize`, which the page
//! turns into a resize message, as the fit add-on does on a window resize) and reads
//! `stty size` following it. Results are read from the DOM that `--dump-dom` prints;
//! the page's load is held open by an image from a small HTTP server here until the
//! script has finished (as in tests/browser.rs).
//!
//! Without Chromium or without xterm.js (examples/terminal/setup.sh) the test skips,
//! unless WSTUND_REQUIRE_BROWSER=1 (scripts/test.sh sets it and runs setup.sh).
mod common;

use common::cdp::find_chromium;
use common::dumpdom::{dump_dom, hold_server, HEADLESS_FLAGS};
use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

const PAGE_DEADLINE: Duration = Duration::from_secs(40);


fn skip_or_fail(why: &str) {
    if std::env::var("WSTUND_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("WSTUND_REQUIRE_BROWSER=1 but {why}");
    }
    eprintln!("SKIPPED: {why}; WSTUND_REQUIRE_BROWSER=1 makes this a failure");
}



/// Appended to the shipped page: drives the terminal as a user would and reports.
const DRIVER: &str = r#"
<img id="hold" src="http://127.0.0.1:__HOLD__/hold" alt="">
<pre id="results"></pre>
<script>
(async () => {
  const out = [];
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const text = () => {
    const b = wstundTerm.buffer.active;
    let s = "";
    for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + "\n";
    return s;
  };
  const waitFor = async (re) => {
    const t0 = Date.now();
    while (Date.now() - t0 < 10000) {
      const m = text().match(re);
      if (m) return m;
      await sleep(50);
    }
    return null;
  };
  try {
    out.push((await waitFor(/\$ $/m)) ? "PASS prompt" : "FAIL prompt");
    wstundTerm.input("echo hello-$((6*7))\r");
    out.push((await waitFor(/^hello-42$/m)) ? "PASS echo" : "FAIL echo");
    wstundTerm.resize(100, 30);
    await sleep(100);
    wstundTerm.input("stty size\r");
    out.push((await waitFor(/^30 100$/m)) ? "PASS resize" : "FAIL resize");
  } catch (e) {
    out.push("FAIL exception " + e);
  }
  out.push("BUFFER " + JSON.stringify(text().trimEnd()));
  document.getElementById("results").textContent = out.join("\n");
  new Image().src = "http://127.0.0.1:__HOLD__/done";
})();
</script>
</body>"#;

#[test]
fn the_shipped_xterm_page_runs_a_shell_and_follows_a_resize() {
    let Some(chromium) = find_chromium() else {
        return skip_or_fail("no chromium found in PATH (set WSTUND_CHROMIUM or install chromium)");
    };
    let modules = repo_root().join("examples/terminal/node_modules");
    if !modules.join("@xterm/xterm/lib/xterm.js").is_file() {
        return skip_or_fail("xterm.js is not installed (run examples/terminal/setup.sh)");
    }
    let (hold_port, done) = hold_server(PAGE_DEADLINE);
    let dir = TempDir::new("ptybr");
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    // The page comes from wstund itself (static files), the WebSocket from the same
    // origin: the shipped page connects to ws://<its host>/term.
    let conf = Conf::new()
        .set("server.document-root", &format!("\"{}\"", site.display()))
        .set("index-file.names", "( \"index.html\" )")
        .set("mimetype.assign", "( \".html\" => \"text/html\", \".js\" => \"text/javascript\", \".css\" => \"text/css\" )")
        .route("/term", &["( \"bin-path\" => \"/bin/sh -i\", \"mode\" => \"pty\", \"bin-environment\" => ( \"PS1\" => \"$ \" ) )".to_string()]);
    let d = Daemon::start_conf(&conf);
    let shipped = std::fs::read_to_string(repo_root().join("examples/terminal/index.html")).expect("read the shipped page");
    assert_eq!(shipped.matches("</body>").count(), 1);
    let page = shipped.replace("</body>", &DRIVER.replace("__HOLD__", &hold_port.to_string()));
    std::fs::write(site.join("index.html"), page).unwrap();
    std::fs::write(site.join("shot.html"), &shipped).unwrap();
    std::os::unix::fs::symlink(&modules, site.join("node_modules")).unwrap();
    let url = format!("http://127.0.0.1:{}/", d.port());

    let out = dump_dom(&chromium, &dir, &url, &[], PAGE_DEADLINE + Duration::from_secs(30));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = &stderr[stderr.len().saturating_sub(3000)..];
    assert!(done.load(Ordering::SeqCst), "the page never reported done\nDOM:\n{dom}\nchromium stderr:\n{tail}\nwstund:\n{}", d.logs());
    let start = dom.find("<pre id=\"results\">").expect("results element") + "<pre id=\"results\">".len();
    let results = &dom[start..start + dom[start..].find("</pre>").expect("end of results")];
    for check in ["prompt", "echo", "resize"] {
        assert!(results.lines().any(|l| l == format!("PASS {check}")), "{check} failed:\n{results}\nwstund:\n{}", d.logs());
    }
    // A screenshot of the shipped page as served (a test artifact, not committed): the
    // shell's prompt in the terminal.
    let shots = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("terminal.png");
    let _ = std::fs::remove_file(&png);
    let status = Command::new(&chromium)
        .args(HEADLESS_FLAGS)
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", dir.join("profile2").display()))
        .args(["--window-size=800,300", "--virtual-time-budget=3000"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("http://127.0.0.1:{}/shot.html", d.port()))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chromium screenshot");
    assert!(status.success() && std::fs::metadata(&png).map(|m| m.len() > 1000).unwrap_or(false), "no screenshot at {}", png.display());
    let log = d.logs();
    assert!(log.contains("path=/index.html") || log.contains("path=/"), "the page did not come from wstund:\n{log}");
}
