"""Shared pytest plumbing: import path, default timeout, mock providers, Envoy and fleet store fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness import EnvoyProcess  # noqa: E402
from tools.fleet_store import FleetStore  # noqa: E402
from tests.mocks import MockProviders  # noqa: E402

DEFAULT_TEST_TIMEOUT_S = 120
DEFAULT_MOCKS = ("openai", "anthropic", "gemini", "bedrock")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A per-test timeout unless one was given on the command line, in PYTEST_TIMEOUT or in an ini file."""
    config.addinivalue_line("markers", "soak: the fault soak; short (SOAK_SECONDS, default 20) unless make soak runs it")
    if (
        config.getoption("timeout", None) is None
        and not os.environ.get("PYTEST_TIMEOUT")
        and not config.getini("timeout")
    ):
        config.option.timeout = DEFAULT_TEST_TIMEOUT_S


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember each phase's outcome on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def mocks():
    """Started MockProviders with listeners named after DEFAULT_MOCKS; start() more as needed."""
    with MockProviders() as providers:
        providers.start(DEFAULT_MOCKS)
        yield providers


@pytest.fixture
def envoy(request: pytest.FixtureRequest, tmp_path: Path):
    """Factory: envoy(config_dict, **EnvoyProcess options) -> a started EnvoyProcess, stopped after the test.

    When the test failed, each Envoy's log tail is printed into the report.
    """
    started: list[EnvoyProcess] = []

    def start(config: dict, **options) -> EnvoyProcess:
        process = EnvoyProcess(config, workdir=tmp_path / f"envoy-{len(started)}", **options)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for index, process in enumerate(started):
            print(f"----- envoy-{index} log tail -----\n{process.log_text()[-4000:]}")


@pytest.fixture
def start_gateway(mocks, envoy):
    """Factory: start_gateway(plugin=None, yaml_path=DEMO_YAML, tweak=None, **envoy options) -> Gateway.

    tweak(config) may edit the Envoy config (e.g. the retry policy) before Envoy starts.
    """
    from tests.gateway import DEMO_KEY, DEMO_YAML, Gateway, gateway_config

    def start(plugin=None, yaml_path=DEMO_YAML, tweak=None, **options):
        governed = plugin is None or (isinstance(plugin, dict) and "governance" in plugin)
        config = gateway_config(mocks, plugin, yaml_path, tweak)
        return Gateway(envoy(config, **options), mocks, DEMO_KEY if governed else None)

    return start


@pytest.fixture
def gateway(start_gateway):
    """The demo gateway with its shipped configuration."""
    return start_gateway()


@pytest.fixture
def fleet_store(request: pytest.FixtureRequest, tmp_path: Path):
    """A started FleetStore (Redis behind webdis on free loopback ports), stopped after the test.

    When the test failed, Redis's and webdis's log tails are printed into the report.
    """
    store = FleetStore(workdir=tmp_path / "fleet")
    store.start()
    yield store
    store.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"----- fleet store logs -----\n{store.log_text()}")
