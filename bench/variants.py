#!/usr/bin/env python3
"""Compare build-profile variants of the Signalbox module: size, Envoy RSS, CPU per request.

Each variant is the release build with Cargo profile overrides (CARGO_PROFILE_RELEASE_*,
so Cargo.toml is untouched) and extra rustc flags for the Wasm target, built into a target
directory of its own, optionally passed through binaryen's wasm-opt (Debian's `binaryen` package). Every variant is then measured by
bench/run.py (scenario signalbox, one worker), the variants taking turns within each
repetition so that outside load spreads over all of them; the table shows medians.

--module NAME=PATH adds a module built elsewhere (say, the previous commit's, built in a git
worktree) to compare a code change with, alone against the shipped build unless --only says
more. The order of the variants rotates from one repetition to the next, and the table adds
each variant's paired difference from the first one (the median, over repetitions, of the
two runs' difference), which on a noisy machine says more than two medians.

Usage: python3 bench/variants.py [--repeat 3] [--duration 3] [--only o3,s,...]
       python3 bench/variants.py --module before=/tmp/before/signalbox.wasm --repeat 8
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

BENCH = Path(__file__).absolute().parent
ROOT = BENCH.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

class Variant(NamedTuple):
    target_dir: str  # under target/; "" = the shipped build's own
    profile: dict  # CARGO_PROFILE_RELEASE_<key> overrides
    wasm_opt: list = None  # wasm-opt flags, applied to the Cargo build
    # rustc flags for the Wasm target, after .cargo/config.toml's (CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS)
    rustflags: str = ""


# At opt-level s and z the module has 2-3x the functions (less inlining), so its name
# section grows more than its code shrinks: they are measured stripped (wasm-opt
# --strip-debug drops the name section and runs no optimization pass).
VARIANTS = {
    "o3": Variant("", {}),  # the shipped profile: opt-level 3, strip debuginfo
    "o3-strip": Variant("variant-3-strip", {"STRIP": "symbols"}),
    "s-strip": Variant("variant-s", {"OPT_LEVEL": "s"}, ["--strip-debug"]),
    "z-strip": Variant("variant-z", {"OPT_LEVEL": "z"}, ["--strip-debug"]),
    "o3+wasm-opt-O3": Variant("", {}, ["-O3"]),
    "s+wasm-opt-Os": Variant("variant-s", {"OPT_LEVEL": "s"}, ["-Os"]),
    # The shipped build without Wasm SIMD (.cargo/config.toml turns it on).
    "o3-no-simd128": Variant("variant-no-simd128", {}, rustflags="-C target-feature=-simd128"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build(name):
    """The variant's module, built (or reused) in its target directory."""
    variant = VARIANTS[name]
    target_dir = TARGET / variant.target_dir
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir),
               **{f"CARGO_PROFILE_RELEASE_{k}": v for k, v in variant.profile.items()})
    if variant.rustflags:
        env["CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS"] = variant.rustflags
    log(f"variants: build {name}")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1", "-p", "signalbox"],
                   cwd=ROOT, env=env, check=True)
    wasm = target_dir / "wasm32-wasip1/release/signalbox.wasm"
    if not variant.wasm_opt:
        return wasm
    if not shutil.which("wasm-opt"):
        raise SystemExit("variants: wasm-opt not found (apt-get install binaryen)")
    optimized = target_dir / f"signalbox{''.join(variant.wasm_opt)}.wasm"
    if not optimized.exists() or optimized.stat().st_mtime < wasm.stat().st_mtime:
        log(f"variants: wasm-opt {' '.join(variant.wasm_opt)} {wasm}")
        subprocess.run(["wasm-opt", *variant.wasm_opt, str(wasm), "-o", str(optimized)], check=True)
    return optimized


def measure(wasm, args, out):
    subprocess.run([sys.executable, BENCH / "run.py", "--no-build", "--wasm", wasm, "--scenarios", "signalbox",
                    "--rss-workers", "1", "--duration", str(args.duration), "--warmup", str(args.warmup),
                    "--json", out], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--only", help=f"comma-separated variants (default all: {', '.join(VARIANTS)})")
    ap.add_argument("--module", action="append", default=[], metavar="NAME=PATH",
                    help="also measure this already built module under NAME (repeatable)")
    args = ap.parse_args()
    prebuilt = {}
    for spec in args.module:
        name, _, path = spec.partition("=")
        if not name or not path or name in VARIANTS or name in prebuilt:
            ap.error(f"--module takes NAME=PATH with a new name: {spec!r}")
        if not Path(path).is_file():
            ap.error(f"--module {name}: no file {path}")
        prebuilt[name] = Path(path)
    default = ["o3"] if prebuilt else list(VARIANTS)
    names = args.only.split(",") if args.only else default
    unknown = set(names) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants: {', '.join(sorted(unknown))}")

    modules = {name: build(name) for name in names}
    modules.update(prebuilt)
    names += list(prebuilt)
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="signalbox-variants-") as tmp:
        for rep in range(args.repeat):
            # Each repetition starts with another variant, so none always runs first.
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                log(f"variants: [{rep + 1}/{args.repeat}] {name}")
                results[name].append(measure(modules[name], args, Path(tmp) / f"{name}-{rep}.json"))

    def median(name, pick):
        values = [v for run in results[name] for v in pick(run) if v is not None]
        return statistics.median(values) if values else None

    def row_value(body, connections, key):
        return lambda run: [r[key] for r in run["rows"] if r["body"] == body and r["connections"] == connections]

    def paired(name, pick):
        """Median over repetitions of (this variant's value - the first variant's)."""
        differences = [a[0] - b[0] for a, b in zip(map(pick, results[name]), map(pick, results[names[0]]))
                       if a and b and a[0] is not None and b[0] is not None]
        return statistics.median(differences) if differences else None

    def signalbox_rss(run):
        return [m["rss_mb"] for m in run["memory"] if m["scenario"] == "signalbox"]

    short_cpu = row_value("short", 32, "envoy_cpu_us_per_req")
    long_cpu = row_value("long", 32, "envoy_cpu_us_per_req")
    print("| variant | module KB | Envoy RSS MB (1 worker) | CPU µs/req short ×32 | CPU µs/req long ×32 "
          f"| p50 µs short ×1 | CPU µs/chunk stream | paired Δ short / long ×32 vs {names[0]} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        cells = [median(name, signalbox_rss), median(name, short_cpu), median(name, long_cpu),
                 median(name, row_value("short", 1, "p50_us")),
                 median(name, row_value("stream", 32, "envoy_cpu_us_per_chunk"))]
        formatted = " | ".join("-" if c is None else f"{c:.1f}" for c in cells)
        deltas = "-" if name == names[0] else " / ".join(
            "-" if d is None else f"{d:+.1f}" for d in (paired(name, short_cpu), paired(name, long_cpu)))
        print(f"| {name} | {modules[name].stat().st_size / 1024:.0f} | {formatted} | {deltas} |")
    print(f"\nMedians of {args.repeat} runs of bench/run.py --scenarios signalbox --rss-workers 1 "
          f"--duration {args.duration:g} --warmup {args.warmup:g}, the variants taking turns "
          f"(the order rotating each repetition).")


if __name__ == "__main__":
    main()
