//! Several workers (`server.max-worker`), one set of figures: the shared-memory board.
//!
//! Why shared memory and not the supervisor collecting: a status or metrics page is
//! answered by whichever worker the kernel gave the client to, inside that worker's
//! turn, and the loop never waits on another process. So every worker publishes its
//! samples once a second (on the tick) into its own slot of one `MAP_SHARED` block the
//! supervisor mapped before forking; the worker that renders a page reads the other
//! slots (never blocking: a seqlock, retried a few times, skipped if still torn) and
//! adds its own live samples. Other workers' figures are at most one tick old.
//!
//! Each slot has one writer (its worker), so no locks and no atomic read-modify-write
//! across processes. A respawned worker overwrites its slot from zero: a counter summed
//! over workers can go down after a worker crash, which Prometheus' `rate()` treats as
//! a reset.
//!
//! Merging: counters, gauges and histograms with the same name and labels are summed,
//! except gauges in microseconds (a longest turn, a render time), which take the
//! maximum. `wstund_worker_connections` and `wstund_worker_accepted_total`, labelled
//! `worker` (1-based) and `pid`, show each worker apart.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::metrics::family::{Family, Histogram, Kind, Sink, Source, DURATION_BUCKETS_US};

/// Bytes of samples one worker may publish; a larger dump is not published (the slot
/// says so, and the pages show the other workers without it).
pub const SLOT_BYTES: usize = 256 * 1024;
/// Header words of a slot: sequence, pid, length in bytes.
const HEADER_WORDS: usize = 3;
const SLOT_WORDS: usize = HEADER_WORDS + SLOT_BYTES / 8;
/// The length a slot holds when its worker's dump did not fit.
const TOO_LARGE: u64 = u64::MAX;
/// Attempts to read a slot while its worker is writing it.
const READ_TRIES: usize = 4;

/// One `MAP_SHARED | MAP_ANONYMOUS` block, one slot per worker, mapped by the
/// supervisor before the first fork and inherited by every worker. Never unmapped: it
/// lives as long as the process.
#[derive(Clone)]
pub struct Board {
    words: &'static [AtomicU64],
    slots: usize,
}

impl Board {
    pub fn map(slots: usize) -> std::io::Result<Board> {
        let len = slots.max(1) * SLOT_WORDS * 8;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping is `len` bytes, zeroed, page-aligned (so aligned for
        // AtomicU64, which has u64's layout), and never unmapped.
        let words = unsafe { std::slice::from_raw_parts(p as *const AtomicU64, len / 8) };
        Ok(Board { words, slots: slots.max(1) })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        &self.words[i * SLOT_WORDS..(i + 1) * SLOT_WORDS]
    }

    /// Worker `i`'s dump replaces what its slot held (seqlock writer).
    pub fn publish(&self, i: usize, pid: u32, dump: &[u8]) {
        if i >= self.slots {
            return;
        }
        let s = self.slot(i);
        let seq = s[0].load(Ordering::Relaxed);
        s[0].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        s[1].store(u64::from(pid), Ordering::Relaxed);
        if dump.len() > SLOT_BYTES {
            s[2].store(TOO_LARGE, Ordering::Relaxed);
        } else {
            for (w, chunk) in s[HEADER_WORDS..].iter().zip(dump.chunks(8)) {
                let mut b = [0u8; 8];
                b[..chunk.len()].copy_from_slice(chunk);
                w.store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
            s[2].store(dump.len() as u64, Ordering::Relaxed);
        }
        s[0].store((seq | 1).wrapping_add(1), Ordering::Release);
    }

    /// Worker `i`'s last dump: `None` when it never published, was writing on every try,
    /// or its dump was too large.
    pub fn read(&self, i: usize) -> Option<(u32, String)> {
        if i >= self.slots {
            return None;
        }
        let s = self.slot(i);
        for _ in 0..READ_TRIES {
            let before = s[0].load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let pid = s[1].load(Ordering::Relaxed) as u32;
            let len = s[2].load(Ordering::Relaxed);
            let mut bytes = Vec::new();
            if len != TOO_LARGE {
                let len = (len as usize).min(SLOT_BYTES);
                bytes.reserve(len);
                for w in &s[HEADER_WORDS..HEADER_WORDS + len.div_ceil(8)] {
                    bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                bytes.truncate(len);
            }
            fence(Ordering::Acquire);
            if s[0].load(Ordering::Relaxed) == before {
                return (len != TOO_LARGE).then(|| (pid, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        None
    }

    /// Forgets worker `i`'s dump (the supervisor, when the worker is gone for good).
    pub fn clear(&self, i: usize) {
        if i < self.slots {
            let s = self.slot(i);
            let seq = s[0].load(Ordering::Relaxed);
            s[0].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
            s[2].store(0, Ordering::Relaxed);
            s[0].store(0, Ordering::Release);
        }
    }
}

/// What a worker knows beyond its samples, carried in its dump for the status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerFacts {
    pub idle_slots: u64,
    pub requests_avg5: u64,
    pub traffic_avg5: u64,
    pub scoreboard: String,
}

/// Tabs, newlines and 0x1f (the dump's separators) become spaces; labels are one field,
/// `k=v` joined by 0x1f (route keys come from the conf, never from clients).
fn clean(s: &str) -> String {
    s.chars().map(|c| if matches!(c, '\t' | '\n' | '\x1f') { ' ' } else { c }).collect()
}

/// A [`Sink`] that writes the dump a worker publishes: `f` lines name a family, `s`
/// and `h` lines are its samples, one `x` line carries the [`WorkerFacts`].
#[derive(Default)]
pub struct Dump {
    pub out: String,
    last: Option<&'static str>,
}

impl Dump {
    fn family(&mut self, f: &Family) {
        if self.last != Some(f.name) {
            let _ = writeln!(self.out, "f\t{}\t{}\t{}", f.name, f.kind.as_str(), clean(f.help));
            self.last = Some(f.name);
        }
    }

    fn labels(labels: &[(&str, &str)]) -> String {
        labels.iter().map(|(k, v)| format!("{}={}", clean(k).replace('=', " "), clean(v))).collect::<Vec<_>>().join("\x1f")
    }

    pub fn facts(&mut self, f: &WorkerFacts) {
        let _ = writeln!(self.out, "x\t{}\t{}\t{}\t{}", f.idle_slots, f.requests_avg5, f.traffic_avg5, clean(&f.scoreboard));
    }
}

impl Sink for Dump {
    fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: u64) {
        self.family(family);
        let _ = writeln!(self.out, "s\t{}\t{value}", Dump::labels(labels));
    }

    fn histogram(&mut self, family: &Family, labels: &[(&str, &str)], h: &Histogram) {
        self.family(family);
        let buckets: Vec<String> = h.buckets.iter().map(u64::to_string).collect();
        let _ = writeln!(self.out, "h\t{}\t{}\t{}\t{}", Dump::labels(labels), h.count, h.sum_us, buckets.join(","));
    }
}

#[derive(Debug, Clone)]
enum Value {
    Num(u64),
    Hist(Histogram),
}

struct MergedFamily {
    family: &'static Family,
    series: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

/// One worker's dump as read back: its pid, connections and accepted count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WorkerLine {
    worker: usize,
    pid: u32,
    connections: u64,
    accepted: u64,
}

/// Every worker's dump summed (see the module doc). A [`Source`], so the Prometheus
/// text and the status pages render it like the live sources.
#[derive(Default)]
pub struct Merged {
    families: Vec<MergedFamily>,
    by_name: HashMap<String, usize>,
    workers: Vec<WorkerLine>,
    pub facts: WorkerFacts,
}

/// Families are `&'static` in the seam; a family read from a dump is made static once
/// per name (a bounded set: the families of this binary).
fn intern(name: &str, kind: Kind, help: &str) -> &'static Family {
    static TABLE: OnceLock<Mutex<HashMap<String, &'static Family>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut t = match table.lock() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    };
    if let Some(f) = t.get(name) {
        return f;
    }
    let f: &'static Family = Box::leak(Box::new(Family {
        name: Box::leak(name.to_string().into_boxed_str()),
        help: Box::leak(help.to_string().into_boxed_str()),
        kind,
    }));
    t.insert(name.to_string(), f);
    f
}

fn kind_of(s: &str) -> Option<Kind> {
    match s {
        "counter" => Some(Kind::Counter),
        "gauge" => Some(Kind::Gauge),
        "histogram" => Some(Kind::Histogram),
        _ => None,
    }
}

impl Merged {
    /// Adds worker `worker`'s (0-based) dump; lines it cannot read are skipped.
    pub fn add(&mut self, worker: usize, pid: u32, dump: &str) {
        let mut current: Option<usize> = None;
        let mut line_of = WorkerLine { worker, pid, connections: 0, accepted: 0 };
        for line in dump.lines() {
            let mut f = line.split('\t');
            match f.next() {
                Some("f") => {
                    let (Some(name), Some(kind), help) = (f.next(), f.next().and_then(kind_of), f.next().unwrap_or("")) else {
                        current = None;
                        continue;
                    };
                    let i = *self.by_name.entry(name.to_string()).or_insert_with(|| {
                        self.families.push(MergedFamily { family: intern(name, kind, help), series: Vec::new(), index: HashMap::new() });
                        self.families.len() - 1
                    });
                    current = Some(i).filter(|i| self.families[*i].family.kind == kind);
                }
                Some("s") => {
                    let (Some(i), Some(labels), Some(Ok(v))) = (current, f.next(), f.next().map(str::parse::<u64>)) else { continue };
                    let fam = &mut self.families[i];
                    if labels.is_empty() {
                        match fam.family.name {
                            "wstund_connections" => line_of.connections = v,
                            "wstund_connections_accepted_total" => line_of.accepted = v,
                            _ => {}
                        }
                    }
                    let max = fam.family.kind == Kind::Gauge && fam.family.name.ends_with("_microseconds");
                    match fam.index.get(labels) {
                        Some(&j) => {
                            if let Value::Num(n) = &mut fam.series[j].1 {
                                *n = if max { (*n).max(v) } else { n.saturating_add(v) };
                            }
                        }
                        None => {
                            fam.index.insert(labels.to_string(), fam.series.len());
                            fam.series.push((labels.to_string(), Value::Num(v)));
                        }
                    }
                }
                Some("h") => {
                    let (Some(i), Some(labels)) = (current, f.next()) else { continue };
                    let nums = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
                    let (Some(count), Some(sum_us)) = (nums(f.next()), nums(f.next())) else { continue };
                    let mut h = Histogram { count, sum_us, ..Histogram::default() };
                    let buckets: Vec<u64> = f.next().unwrap_or("").split(',').filter_map(|b| b.parse().ok()).collect();
                    if buckets.len() != DURATION_BUCKETS_US.len() {
                        continue;
                    }
                    h.buckets.copy_from_slice(&buckets);
                    let fam = &mut self.families[i];
                    match fam.index.get(labels) {
                        Some(&j) => {
                            if let Value::Hist(t) = &mut fam.series[j].1 {
                                for (a, b) in t.buckets.iter_mut().zip(h.buckets) {
                                    *a += b;
                                }
                                t.count += h.count;
                                t.sum_us = t.sum_us.saturating_add(h.sum_us);
                            }
                        }
                        None => {
                            fam.index.insert(labels.to_string(), fam.series.len());
                            fam.series.push((labels.to_string(), Value::Hist(h)));
                        }
                    }
                }
                Some("x") => {
                    let n = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                    self.facts.idle_slots += n(f.next());
                    self.facts.requests_avg5 += n(f.next());
                    self.facts.traffic_avg5 += n(f.next());
                    self.facts.scoreboard.push_str(f.next().unwrap_or(""));
                }
                _ => {}
            }
        }
        self.workers.push(line_of);
        self.workers.sort_by_key(|w| w.worker);
    }

    /// The workers whose dumps were added, as (1-based worker number, pid).
    #[cfg(test)]
    pub fn workers(&self) -> Vec<(usize, u32)> {
        self.workers.iter().map(|w| (w.worker + 1, w.pid)).collect()
    }
}

const WORKER_CONNECTIONS: Family =
    Family { name: "wstund_worker_connections", help: "Client connections one worker holds now.", kind: Kind::Gauge };
const WORKER_ACCEPTED: Family =
    Family { name: "wstund_worker_accepted_total", help: "Client connections one worker accepted (since it started).", kind: Kind::Counter };

impl Source for Merged {
    fn expose(&self, out: &mut dyn Sink) {
        for fam in &self.families {
            for (labels, v) in &fam.series {
                let pairs: Vec<(&str, &str)> =
                    labels.split('\x1f').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
                match v {
                    Value::Num(n) => out.sample(fam.family, &pairs, *n),
                    Value::Hist(h) => out.histogram(fam.family, &pairs, h),
                }
            }
        }
        for (family, pick) in [(&WORKER_CONNECTIONS, 0), (&WORKER_ACCEPTED, 1)] {
            for w in &self.workers {
                let (n, pid) = ((w.worker + 1).to_string(), w.pid.to_string());
                out.sample(family, &[("worker", &n), ("pid", &pid)], if pick == 0 { w.connections } else { w.accepted });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Collected;

    const OPEN: Family = Family { name: "wstund_tunnels_open", help: "Tunnels open now.", kind: Kind::Gauge };
    const CONNS: Family = Family { name: "wstund_connections", help: "Held.", kind: Kind::Gauge };
    const TURN: Family = Family { name: "wstund_loop_longest_turn_microseconds", help: "Longest.", kind: Kind::Gauge };
    const WAIT: Family = Family { name: "wstund_wait_seconds", help: "Waits.", kind: Kind::Histogram };

    fn dump(open: u64, conns: u64, turn: u64, facts: &WorkerFacts) -> String {
        let mut d = Dump::default();
        d.sample(&CONNS, &[], conns);
        d.sample(&OPEN, &[("route", "/a\tb")], open);
        d.sample(&OPEN, &[("route", "/x")], 1);
        d.sample(&TURN, &[], turn);
        let mut h = Histogram::default();
        h.observe(std::time::Duration::from_millis(3));
        d.histogram(&WAIT, &[("backend", "b")], &h);
        d.facts(facts);
        d.out
    }

    #[test]
    fn dumps_sum_by_name_and_labels_and_microsecond_gauges_take_the_max() {
        let mut m = Merged::default();
        let f = WorkerFacts { idle_slots: 5, requests_avg5: 1, traffic_avg5: 10, scoreboard: "WW".into() };
        m.add(0, 100, &dump(2, 3, 50, &f));
        m.add(1, 101, &dump(5, 4, 20, &f));
        let mut c = Collected::default();
        m.expose(&mut c);
        assert_eq!(c.value("wstund_tunnels_open", &[("route", "/a b")]), Some(7));
        assert_eq!(c.value("wstund_tunnels_open", &[("route", "/x")]), Some(2));
        assert_eq!(c.value("wstund_connections", &[]), Some(7));
        assert_eq!(c.value("wstund_loop_longest_turn_microseconds", &[]), Some(50));
        assert_eq!(c.value("wstund_wait_seconds", &[("backend", "b")]), Some(2), "histogram counts summed");
        assert_eq!(c.value("wstund_worker_connections", &[("worker", "2"), ("pid", "101")]), Some(4));
        assert_eq!(m.facts, WorkerFacts { idle_slots: 10, requests_avg5: 2, traffic_avg5: 20, scoreboard: "WWWW".into() });
        assert_eq!(m.workers(), vec![(1, 100), (2, 101)]);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let mut m = Merged::default();
        m.add(0, 1, "s\t\t5\nf\twstund_x\tnonsense\thelp\ns\t\t3\nf\twstund_y\tgauge\th\ns\t\tnope\ns\t\t4\nh\t\t1\n");
        let mut c = Collected::default();
        m.expose(&mut c);
        assert_eq!(c.value("wstund_y", &[]), Some(4));
        assert_eq!(c.value("wstund_x", &[]), None);
    }

    #[test]
    fn a_slot_reads_back_what_was_published_and_forgets_when_cleared() {
        let b = Board::map(2).unwrap();
        assert_eq!(b.read(0), None, "never published");
        b.publish(1, 42, b"hello, board");
        assert_eq!(b.read(1), Some((42, "hello, board".to_string())));
        b.publish(1, 42, b"hi");
        assert_eq!(b.read(1), Some((42, "hi".to_string())));
        b.publish(1, 42, &vec![b'a'; SLOT_BYTES + 1]);
        assert_eq!(b.read(1), None, "too large is not published");
        b.clear(1);
        assert_eq!(b.read(1), None);
        assert_eq!(b.read(7), None);
    }
}
