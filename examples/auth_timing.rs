//! How long one password check takes on this machine, through the code wstund runs
//! (`wstund::auth::hash::verify`): bcrypt at costs 4..12, SHA-crypt, MD5-crypt, plain.
//! scripts/bench-auth.sh prints the table. The event loop serves nothing else for that
//! long (auth.cache skips the check for credentials verified a moment ago).
//!
//! Usage: auth_timing [ROUNDS]   (default 5 checks per row; the medians of the wall
//! time and of the thread's CPU time are printed)

use std::time::{Duration, Instant};

use wstund::auth::{hash, Secret};

/// This thread's CPU time: on a shared machine the wall clock also counts other
/// processes' turns, the CPU time is what the check itself costs.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Median (wall, CPU) of `rounds` checks.
fn median_check(secret: &Secret, pw: &[u8], rounds: usize) -> (Duration, Duration) {
    let mut wall = Vec::with_capacity(rounds);
    let mut cpu = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (t0, c0) = (Instant::now(), thread_cpu());
        assert!(hash::verify(secret, pw), "the check failed");
        wall.push(t0.elapsed());
        cpu.push(thread_cpu().saturating_sub(c0));
    }
    wall.sort();
    cpu.sort();
    (wall[rounds / 2], cpu[rounds / 2])
}

fn row(name: &str, (wall, cpu): (Duration, Duration)) {
    println!("{:<28} {:>10.3} {:>10.3}", name, wall.as_secs_f64() * 1e3, cpu.as_secs_f64() * 1e3);
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let pw = b"correct horse battery staple";
    println!("{:<28} {:>10} {:>10}", "format", "wall ms", "CPU ms");
    for cost in [4u32, 5, 8, 10, 11, 12] {
        let hash = match bcrypt::hash_with_salt(pw, cost, [42u8; 16]) {
            Ok(h) => h.format_for_version(bcrypt::Version::TwoY),
            Err(e) => {
                eprintln!("bcrypt cost {cost}: {e}");
                std::process::exit(1);
            }
        };
        row(&format!("bcrypt $2y$ cost {cost}"), median_check(&Secret::Bcrypt { hash, cost }, pw, rounds));
    }
    // glibc's defaults: 5000 rounds.
    let six = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    let five = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
    let apr1 = hash::md5_crypt(b"password", b"xxxxxxxx", b"$apr1$");
    let rows: [(&str, Secret, &[u8]); 4] = [
        ("SHA-512-crypt $6$ (5000)", Secret::ShaCrypt(six.into()), b"Hello world!"),
        ("SHA-256-crypt $5$ (5000)", Secret::ShaCrypt(five.into()), b"Hello world!"),
        ("MD5-crypt $apr1$", Secret::Md5Crypt(apr1), b"password"),
        ("plain", Secret::Plain("pw".into()), b"pw"),
    ];
    for (name, secret, p) in rows {
        row(name, median_check(&secret, p, rounds));
    }
}
