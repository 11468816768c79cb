//! Randomized robustness: token soup and mutated valid configurations must
//! produce a config or an error, never a panic, a hang or a stack overflow.
//! Deterministic (fixed seeds, own xorshift), so a failure reproduces.

use std::time::{Duration, Instant};

use super::load_str;
use super::parser::MAX_DEPTH;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Tokens for the soup. `include_shell` is left out on purpose: random
/// commands must not run.
const VOCAB: &[&str] = &[
    "server.port", "server.bind", "wstunnel.server", "wstunnel.debug", "wstunnel.origins", "var.x", "var.y", "env.HOME",
    "index-file.names", "=", "+=", ":=", "+", "(", ")", "{", "}", "[", "]", ",", "=>", ";", "$HTTP", "$SERVER",
    "$REQUEST_HEADER", "$PHYSICAL", "[\"url\"]", "[\"host\"]", "[\"remoteip\"]", "[\"socket\"]", "==", "!=", "=~", "!~",
    "=^", "=$", "else", "elseif", "if", "global", "\"host\"", "\"port\"", "\"/ws\"", "\"a(\"", "\"%1\"", "\"10.0.0.0/8\"",
    "\":8443\"", "\"enable\"", "1", "0", "65536", "99999999999", "\"\\\"\"", "# c\n", "\n", "\"", "true", "@",
];

const SEEDS: &[&str] = &[
    r#"server.port = 8080
var.b = "/ws"
wstunnel.server = ( var.b => ( ( "host" => "127.0.0.1", "port" => 9001 ), "n" => ( "socket" => "/tmp/s" ) ),
                    ".x" => ( ( "bin-path" => "/bin/cat", "mode" => "stdio" ) ) )
wstunnel.origins = ( "https://a" )
wstunnel.max-frame-size = "64k"
"#,
    r#"$HTTP["host"] =~ "^(\w+)\.example$" {
    wstunnel.origins = ( "https://%1" )
    $HTTP["url"] =^ "/a" { wstunnel.debug = 2 } else $HTTP["url"] =$ ".b" { wstunnel.debug = 3 } else { }
} else $HTTP["remoteip"] == "10.0.0.0/8" {
    wstunnel.frame-type = "binary"
}
$SERVER["socket"] == ":8443" { url.access-deny = ( "~" ) }
index-file.names += ( "a" ) mimetype.assign = ( ".a" => "b" )
"#,
];

fn check(src: &str, worst: &mut Duration) {
    let t = Instant::now();
    let r = load_str("fuzz.conf", src);
    let took = t.elapsed();
    if took > *worst {
        *worst = took;
    }
    if let Err(e) = r {
        // Errors must point inside the source (or at its end).
        let lines = src.split('\n').count() as u32;
        assert!(e.line <= lines.max(1), "line {} beyond {} lines for {:?}: {}", e.line, lines, src, e);
        assert!(!e.message.is_empty());
        let _ = e.to_string();
    }
}

#[test]
fn token_soup_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut worst = Duration::ZERO;
    for _ in 0..3000 {
        let n = rng.below(40);
        let mut src = String::new();
        for _ in 0..n {
            src.push_str(VOCAB[rng.below(VOCAB.len())]);
            src.push(' ');
        }
        check(&src, &mut worst);
    }
    assert!(worst < Duration::from_secs(2), "slowest case took {:?}", worst);
}

#[test]
fn mutated_configs_never_panic() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut worst = Duration::ZERO;
    for seed in SEEDS {
        assert!(load_str("seed.conf", seed).is_ok(), "seed must be valid: {}", seed);
        let base: Vec<char> = seed.chars().collect();
        for _ in 0..1500 {
            let mut s = base.clone();
            for _ in 0..=rng.below(4) {
                if s.is_empty() {
                    break;
                }
                let i = rng.below(s.len());
                match rng.below(4) {
                    0 => {
                        let j = (i + 1 + rng.below(8)).min(s.len());
                        s.drain(i..j);
                    }
                    1 => {
                        const CHARS: &[u8] = b"(){}[]\"=+,$%\\#\n a1.";
                        let c = CHARS[rng.below(CHARS.len())] as char;
                        s.insert(i, c);
                    }
                    2 => {
                        let j = (i + 1 + rng.below(16)).min(s.len());
                        let dup: Vec<char> = s[i..j].to_vec();
                        let at = rng.below(s.len());
                        s.splice(at..at, dup);
                    }
                    _ => {
                        let j = rng.below(s.len());
                        s.swap(i, j);
                    }
                }
            }
            let src: String = s.into_iter().collect();
            check(&src, &mut worst);
        }
    }
    assert!(worst < Duration::from_secs(2), "slowest case took {:?}", worst);
}

#[test]
fn deep_nesting_gives_errors() {
    let cases = [
        format!("x = {}", "(".repeat(100_000)),
        format!("{}{}", "$HTTP[\"url\"] == \"/\" {\n".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1)),
        format!("x = ( {} )", "( 1 ), ".repeat(50_000)),
        format!("var.x = \"a\"\nvar.y = var.x{}", " + var.x".repeat(20_000)),
    ];
    for (i, src) in cases.iter().enumerate() {
        let t = Instant::now();
        let r = load_str("deep.conf", src);
        assert!(t.elapsed() < Duration::from_secs(5), "case {} slow", i);
        if i < 2 {
            assert!(r.unwrap_err().message.contains("nesting too deep"), "case {}", i);
        }
    }
}
