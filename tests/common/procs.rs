//! Process helpers for the managed-process tests (`tests/exec.rs`, `tests/pool.rs`, ...):
//! what /proc says about wstund's children, test programs written to temp dirs, and a
//! raw-client loop that collects a tunnel's output up to its close frame.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{RawClient, ReadErr, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

/// One line of /proc/PID/stat, the fields the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(Stat { pid, state, ppid, pgrp })
}

/// Every process on the machine (that is still there while we read it).
pub fn all() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(stat).collect()
}

pub fn children_of(pid: u32) -> Vec<Stat> {
    all().into_iter().filter(|s| s.ppid == pid as i32).collect()
}

pub fn zombies_of(pid: u32) -> Vec<Stat> {
    children_of(pid).into_iter().filter(|s| s.state == 'Z').collect()
}

/// Processes in process group `pgid` (any state).
pub fn group(pgid: i32) -> Vec<Stat> {
    all().into_iter().filter(|s| s.pgrp == pgid).collect()
}

/// True when `pid` no longer exists at all (exited and reaped).
pub fn gone(pid: i32) -> bool {
    stat(pid).is_none()
}

/// Writes an executable script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}

/// A `wstunnel.server` entry running `bin_path` per connection, plus `extra` options.
pub fn stdio(bin_path: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("( \"bin-path\" => \"{bin_path}\", \"mode\" => \"stdio\" )")
    } else {
        format!("( \"bin-path\" => \"{bin_path}\", \"mode\" => \"stdio\", {extra} )")
    }
}

/// Collects data frames until the close frame; returns the payload and the close frame.
/// Pings are answered. Panics on EOF or timeout before a close frame.
pub fn until_close(c: &mut RawClient, timeout: Duration) -> (Vec<u8>, crate::common::Frame) {
    let deadline = Instant::now() + timeout;
    let mut data = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.read_frame(left) {
            Ok(f) if f.opcode == OP_CLOSE => return (data, f),
            Ok(f) if matches!(f.opcode, OP_TEXT | OP_BINARY | OP_CONT) => data.extend_from_slice(&f.payload),
            Ok(f) if f.opcode == OP_PING => c.send_frame(OP_PONG, &f.payload),
            Ok(_) => {}
            Err(ReadErr::Timeout) => panic!("no close frame within {timeout:?}; got {} bytes: {:?}", data.len(), String::from_utf8_lossy(&data[..data.len().min(300)])),
            Err(e) => panic!("{e:?} before a close frame; got {} bytes", data.len()),
        }
    }
}

/// Close code and reason of a close frame.
pub fn close_of(f: &crate::common::Frame) -> (u16, String) {
    (f.close_code().unwrap_or(0), String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[])).into_owned())
}
