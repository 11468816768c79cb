#!/usr/bin/env python3
"""Renders RELIABILITY.md from the records the test and run scripts write; no number in
it is typed by hand. scripts/reliability.sh collects the inputs and calls this.

Inputs (each optional; a section without its input says it was not run):
  --faults FILE    RELIABILITY<TAB>fault=…<TAB>behaviour=…<TAB>figures=…<TAB>test=… lines,
                   written by the tests/faults_*.rs tests (WSTUND_RELIABILITY_OUT)
  --fuzz FILE      scripts/fuzz.sh's output (`fuzz: run …` and `fuzz: target=…` lines);
                   repeatable: per target, the run that gave it the most CPU
  --soak FILE      the JSON of scripts/soak.sh --json
  --autobahn FILE  scripts/autobahn.sh's output (its summary line)
  --meta K=V       facts about the run (date, commit, machine), repeatable
"""
import argparse
import json
import re
import sys

# What each fuzz target feeds and what wstund does with bad input of that class. Words,
# not figures: the figures come from the run.
FUZZ_CLASSES = {
    "frame_decoder": ("client WebSocket frames (every decoder option on and off)",
                      "a violation closes the tunnel with 1002, 1007 or 1009; never a panic or a loop"),
    "frame_differential": ("valid client frames",
                           "decoded exactly as tungstenite decodes them"),
    "http_request": ("HTTP request heads and upgrade requests",
                     "400/405/413/426/431 before any upgrade; never a panic"),
    "conf": ("conf text: lexer, parser and evaluator (include and include_shell refused)",
             "file:line:col and exit 2 before anything is bound; never a panic"),
    "backend_records": ("backend output: framed records and lines",
                        "a bad record closes with 1011 and says why; never a panic"),
    "inflate": ("permessage-deflate payloads, with the message size limit",
                "1007 for bad data, 1009 above the limit; output bounded, never a loop"),
    "base64": ("base64 subprotocol text", "1007 for text that is not base64"),
    "utf8_stream": ("text split at any point (differential against std::str::from_utf8)",
                    "the same verdict as from_utf8 whatever the split"),
    "proxy_header": ("PROXY protocol v1 and v2 headers (TLVs)",
                       "the connection is closed, others untouched; never a panic"),
    "auth_input": ("htpasswd/plain user-file lines and Authorization header values",
                   "a bad user-file line is refused at load with its line; a bad header gets 401"),
    "token_line": ("websockify token-file lines", "the line is skipped and logged with file:line"),
    "handover": ("the binary-upgrade hand-over stream", "the new process refuses it; the old one keeps serving"),
}


def md(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def read_faults(path):
    rows = []
    seen = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("RELIABILITY\t"):
                continue
            fields = dict(p.split("=", 1) for p in line.rstrip("\n").split("\t")[1:] if "=" in p)
            key = (fields.get("fault"), fields.get("test"))
            if key in seen:
                continue
            seen.add(key)
            rows.append(fields)
    return sorted(rows, key=lambda r: (r.get("test", ""), r.get("fault", "")))


def read_fuzz(path):
    """The result rows, and the `fuzz: run …` provenance line's fields (empty if absent)."""
    rows, run = [], {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("fuzz: target="):
                rows.append(dict(p.split("=", 1) for p in line[len("fuzz: "):].split() if "=" in p))
            elif line.startswith("fuzz: run "):
                run = dict(p.split("=", 1) for p in line[len("fuzz: run "):].split() if "=" in p)
    return rows, run


def cpu_of(row):
    try:
        return float(row.get("cpu_s", ""))
    except ValueError:
        return -1.0


def merge_fuzz(paths):
    """Rows from several fuzz.sh outputs, one per target (in first-seen order): the run
    that gave the target the most CPU, each row tagged with its run's provenance. A
    failed run of a target is kept over any passing one: a crash is never hidden."""
    best, order, runs = {}, [], []
    for path in paths:
        rows, run = read_fuzz(path)
        runs.append(run)
        for r in rows:
            r["run"] = run
            t = r.get("target", "")
            if t not in best:
                order.append(t)
                best[t] = r
                continue
            old = best[t]
            if old.get("status") != "ok":
                continue
            if r.get("status") != "ok" or cpu_of(r) > cpu_of(old):
                best[t] = r
    return [best[t] for t in order], runs


def run_label(run):
    if not run:
        return "-"
    return f"{run.get('commit', '?')} {run.get('date', '?')}, {run.get('jobs', '1')} at a time"


def fmt_int(v):
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return "-" if v in (None, "") else str(v)


def render(args):
    meta = dict(m.split("=", 1) for m in args.meta or [] if "=" in m)
    out = []
    w = out.append
    w("# Reliability: what wstund survives, and the proof")
    w("")
    w("Generated by `scripts/reliability.sh` (renderer: `scripts/reliability.py`) from the")
    w("records the fault tests, the fuzzers, the soak run and Autobahn write. Do not edit")
    w("by hand: run the script again.")
    w("")
    if meta:
        w("Run: " + "; ".join(f"{k} {v}" for k, v in meta.items()) + ".")
        w("")

    w("## Bad input: fuzzing")
    w("")
    if args.fuzz:
        rows, runs = merge_fuzz(args.fuzz)
        w("Each target feeds libFuzzer's input to wstund's own parser (`fuzz/fuzz_targets/`),")
        w("with a seed corpus in `fuzz/corpus/`. `status` is `ok` when the run ended without a")
        w("crash, a timeout or a leak. `seconds` is wall-clock time per target, `CPU seconds`")
        w("what its process got (GNU time, cargo's start-up included): targets run side by side")
        w("share the machine's cores. Where several runs were given, each target shows the one")
        w("that gave it the most CPU (a failed run is always shown); `run` names its commit,")
        w("start and how many targets ran at once.")
        cores = {r.get("cores") for r in runs if r}
        if cores:
            w(f"Machine: {md(', '.join(sorted(c for c in cores if c)))} cores.")
        w("")
        w("| input class | what wstund does | target | seconds | CPU seconds | executions | coverage (edges) | features | status | run |")
        w("|---|---|---|---:|---:|---:|---:|---:|---|---|")
        for r in rows:
            cls, does = FUZZ_CLASSES.get(r.get("target", ""), ("-", "-"))
            w(f"| {md(cls)} | {md(does)} | `{md(r.get('target'))}` | {fmt_int(r.get('seconds'))} | {fmt_int(r.get('cpu_s'))} | "
              f"{fmt_int(r.get('execs'))} | {fmt_int(r.get('cov'))} | {fmt_int(r.get('ft'))} | {md(r.get('status'))} | {md(run_label(r.get('run')))} |")
    else:
        w("Not run in this generation (scripts/reliability.sh without cargo-fuzz).")
    w("")

    w("## Faults")
    w("")
    if args.faults:
        rows = read_faults(args.faults)
        w("Real processes: the wstund binary, real backends and clients. In every fault test a")
        w("set of bystander tunnels streams verified data the whole time and must get every")
        w("byte, in order, with none closed.")
        w("")
        w("| fault | what wstund does | measured | test |")
        w("|---|---|---|---|")
        for r in rows:
            w(f"| {md(r.get('fault', '-'))} | {md(r.get('behaviour', '-'))} | {md(r.get('figures', '-'))} | `{md(r.get('test', '-'))}` |")
    else:
        w("Not run in this generation.")
    w("")

    w("## Churn and soak")
    w("")
    if args.soak:
        with open(args.soak) as f:
            res = json.load(f)["result"]
        w(f"`scripts/soak.sh`: {fmt_int(res['connections'])} connections in {res['seconds']} s, "
          f"{fmt_int(res['bytes_verified'])} payload bytes verified end to end; "
          f"{res['errors']} failed connections, {res['errors_unexplained']} of them not explained by the injected reset.")
        w("")
        w("| tunnel kind (close order) | connections | failed | bytes verified |")
        w("|---|---:|---:|---:|")
        for k, c in res["kinds"].items():
            w(f"| {k} | {fmt_int(c['ok'] + c['err'])} | {c['err']} | {fmt_int(c['verified'])} |")
        w("")
        w("Sampled every second after the warm-up; *drift* is the fitted line's change")
        w("over the run, *flat* means it stayed within the tolerance (5% of the mean or a floor).")
        w("")
        w("| series | slope per minute | drift | tolerance | flat | min | max |")
        w("|---|---:|---:|---:|---|---:|---:|")
        names = {"fds": "open descriptors", "rss_kb": "RSS (KiB)", "buffers_in_use": "payload buffers in use",
                 "children": "child processes", "longest_turn_us": "longest loop turn (µs, since start)"}
        for key, name in names.items():
            s = res.get(key, {})
            flat = {True: "yes", False: "**no**", None: "-"}[s.get("flat")]
            w(f"| {name} | {s.get('slope_per_min')} | {s.get('drift')} | {s.get('tolerance')} | {flat} | {fmt_int(s.get('min'))} | {fmt_int(s.get('max'))} |")
    else:
        w("Not run in this generation.")
    w("")

    w("## Protocol conformance")
    w("")
    if args.autobahn:
        text = open(args.autobahn, encoding="utf-8", errors="replace").read()
        m = re.findall(r"^autobahn: \d+ ok.*$", text, re.M)
        w("Autobahn|Testsuite against the real tunnel path (`scripts/autobahn.sh nocompress`):")
        w("")
        w("    " + (m[-1].strip() if m else "no summary line found"))
    else:
        w("Not run in this generation (`scripts/autobahn.sh nocompress` needs the Autobahn tools).")
    w("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    for opt in ("faults", "soak", "autobahn"):
        ap.add_argument(f"--{opt}")
    ap.add_argument("--fuzz", action="append", help="fuzz.sh output; repeatable")
    ap.add_argument("--meta", action="append")
    args = ap.parse_args()
    sys.stdout.write(render(args))


if __name__ == "__main__":
    main()
