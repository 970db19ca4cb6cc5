"""Run the fleet ledger's store, Redis behind webdis, for tests, the demo and the bench, and always get rid of it.

The binaries come from Debian packages unpacked into <repo>/.fleet/root by `make fleet-deps`
(their shared libraries beside them), else from PATH. Each FleetStore runs in its own directory
with the shipped fleet/redis.conf and fleet/webdis.json, changed only in ports, directories and log
files, plus an `admin` Redis user with a random password that tests use to look inside (webdis
connects as the restricted default user, exactly as in production).

FleetClient is what the filter will do, in Python: POST one EVALSHA command to webdis over a
keep-alive connection, and EVAL the script when Redis answers NOSCRIPT.

Python stdlib only (bench/run.py imports it), so it lives outside tests/harness, whose package
needs PyYAML.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FLEET_ASSETS = REPO_ROOT / "fleet"
LOCAL_ROOT = REPO_ROOT / ".fleet" / "root"
STARTUP_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
# webdis reads `.ext` at the end of a command as a reply format and `?` as a query, decodes `+`
# and `%XX`, and splits on `/`: every byte but these is sent percent-encoded.
_PLAIN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded up front: the child after fork must not dlopen
_PR_SET_PDEATHSIG = 1

_running: set[FleetStore] = set()
_running_lock = threading.Lock()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def binary(name: str) -> tuple[str, dict[str, str]]:
    """The path of `redis-server` or `webdis` and the environment to run it with."""
    env = dict(os.environ)
    local = LOCAL_ROOT / "usr" / "bin" / name
    if os.access(local, os.X_OK):
        libraries = [str(path) for path in (LOCAL_ROOT / "usr" / "lib").glob("*-linux-gnu")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        return str(local), env
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"no {name} in {local.parent} nor on PATH; run `make fleet-deps`")
    return found, env


def script_text(name: str) -> str:
    """What is sent to Redis for `admit`, `settle` or `spend`: the prelude, then the script;
    `rollout` and `feedback` stand alone (as src/fleet/scripts.rs builds them)."""
    prelude = "" if name in ("rollout", "feedback") else (FLEET_ASSETS / "prelude.lua").read_text()
    return prelude + (FLEET_ASSETS / f"{name}.lua").read_text()


def encode_argument(value: str | int) -> str:
    return "".join(chr(byte) if byte in _PLAIN_BYTES else f"%{byte:02X}" for byte in str(value).encode())


def command_body(command: str, *arguments: str | int) -> bytes:
    """A webdis POST body: COMMAND/arg/arg… with every argument percent-encoded."""
    return "/".join([command, *map(encode_argument, arguments)]).encode()


class RedisAdmin:
    """A minimal RESP client for the tests' `admin` user (inspection and fault injection only)."""

    def __init__(self, port: int, password: str, timeout: float = 5.0):
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._reader = self._socket.makefile("rb")
        self.command("AUTH", "admin", password)

    def __enter__(self) -> RedisAdmin:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()
        self._socket.close()

    def command(self, *arguments: str | int) -> Any:
        encoded = [str(argument).encode() for argument in arguments]
        message = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded)
        self._socket.sendall(message)
        return self._read()

    def _read(self) -> Any:
        line = self._reader.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError(f"unexpected RESP line {line!r}")


class FleetStore:
    """Redis (AOF, shipped config) and webdis in front of it, on loopback; a context manager."""

    def __init__(self, workdir: str | os.PathLike | None = None, redis_port: int = 0, webdis_port: int = 0):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="signalbox-fleet-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_port = redis_port or free_port()
        self.webdis_port = webdis_port or free_port()
        self.admin_password = secrets.token_hex(16)
        self._redis: subprocess.Popen | None = None
        self._webdis: subprocess.Popen | None = None

    def __enter__(self) -> FleetStore:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webdis_port}"

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> FleetStore:
        if self._redis is not None:
            raise RuntimeError("this FleetStore was started already")
        with _running_lock:
            _running.add(self)
        try:
            self._write_configs()
            self.start_redis()
            self._webdis = self._spawn("webdis", [str(self.workdir / "webdis.json")], "webdis.out")
            self._wait(self._webdis_ready, "webdis did not answer")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops webdis and Redis (SIGTERM, then SIGKILL); idempotent."""
        for process in (self._webdis, self._redis):
            _terminate(process)
        with _running_lock:
            _running.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_redis(self) -> None:
        self._redis = self._spawn("redis-server", [str(self.workdir / "redis.conf")], "redis.out")
        self._wait(self._redis_ready, "Redis did not start")

    def stop_redis(self, kill: bool = False) -> None:
        """Stops Redis: SIGTERM lets it finish the AOF; kill=True is a crash (SIGKILL)."""
        if kill and self._redis is not None and self._redis.poll() is None:
            self._redis.kill()
            self._redis.wait()
        _terminate(self._redis)

    def pause_redis(self) -> None:
        """Freezes Redis (SIGSTOP): it accepts nothing and answers nothing, like a hung host."""
        if self._redis is not None:
            self._redis.send_signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        if self._redis is not None:
            self._redis.send_signal(signal.SIGCONT)

    def admin(self) -> RedisAdmin:
        return RedisAdmin(self.redis_port, self.admin_password)

    def pids(self) -> list[int]:
        """The running Redis and webdis processes (to measure or pin them)."""
        return [process.pid for process in (self._redis, self._webdis) if process is not None and process.poll() is None]

    def webdis_open_files(self) -> int:
        """How many file descriptors webdis holds (a leak shows as growth)."""
        return len(os.listdir(f"/proc/{self._webdis.pid}/fd"))

    def log_text(self) -> str:
        texts = []
        for name in ("redis.log", "redis.out", "webdis.log", "webdis.out"):
            path = self.workdir / name
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    # --- internals ------------------------------------------------------------------

    def _write_configs(self) -> None:
        shipped = (FLEET_ASSETS / "redis.conf").read_text()
        overrides = [
            f"port {self.redis_port}",
            f'dir "{self.workdir}"',
            'logfile "redis.log"',
            f"user admin on >{self.admin_password} ~* &* +@all",
        ]
        (self.workdir / "redis.conf").write_text(shipped + "\n# The test harness:\n" + "\n".join(overrides) + "\n")
        webdis = json.loads((FLEET_ASSETS / "webdis.json").read_text())
        webdis.update(
            redis_port=self.redis_port,
            http_port=self.webdis_port,
            logfile=str(self.workdir / "webdis.log"),
        )
        (self.workdir / "webdis.json").write_text(json.dumps(webdis, indent=2))

    def _spawn(self, name: str, arguments: list[str], output: str) -> subprocess.Popen:
        path, env = binary(name)
        with open(self.workdir / output, "ab") as log:
            return subprocess.Popen(
                [path, *arguments],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def _wait(self, ready, failure: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for process in (self._redis, self._webdis):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{failure}: exited with {process.returncode}\n{self.log_text()}")
            if ready():
                return
            time.sleep(0.02)
        raise RuntimeError(f"{failure} within {STARTUP_TIMEOUT_S}s\n{self.log_text()}")

    def _redis_ready(self) -> bool:
        try:
            with self.admin() as admin:
                return admin.command("PING") == "PONG"
        except (OSError, RuntimeError):
            return False

    def _webdis_ready(self) -> bool:
        try:
            status, reply = FleetClient(self.url, timeout=1.0).post(command_body("EVAL", "return 1", 0))
        except OSError:
            return False
        return status == 200 and reply == {"EVAL": 1}


def _terminate(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
    process.terminate()
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class NoScript(Exception):
    """Redis does not have the script (it restarted): send it with EVAL."""


class FleetClient:
    """One keep-alive HTTP connection to webdis, as one Envoy worker would hold."""

    def __init__(self, url: str, timeout: float = 5.0):
        host, port = url.removeprefix("http://").split(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def close(self) -> None:
        self._connection.close()

    def post(self, body: bytes) -> tuple[int, Any]:
        """POSTs a command; (status, JSON reply or the raw body if it is not JSON)."""
        try:
            self._connection.request("POST", "/", body=body)
            response = self._connection.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self._connection.close()  # the next request reconnects
            raise
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw

    def run(self, script: str, keys: list[str], arguments: list[str | int]) -> Any:
        """EVALSHA, falling back to EVAL on NOSCRIPT; the script's reply, or RuntimeError."""
        text = script_text(script)
        sha = hashlib.sha1(text.encode()).hexdigest()
        try:
            return self._evaluate("EVALSHA", sha, keys, arguments)
        except NoScript:
            return self._evaluate("EVAL", text, keys, arguments)

    def _evaluate(self, command: str, script: str, keys: list[str], arguments: list[str | int]) -> Any:
        status, reply = self.post(command_body(command, script, len(keys), *keys, *arguments))
        if status != 200 or not isinstance(reply, dict) or list(reply) != [command]:
            raise RuntimeError(f"store unavailable: {status} {reply!r}")
        value = reply[command]
        if isinstance(value, list) and len(value) == 2 and value[0] is False:
            if str(value[1]).startswith("NOSCRIPT"):
                raise NoScript()
            raise RuntimeError(f"Redis error: {value[1]}")
        return value


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: a store a test forgot must not keep running."""
    with _running_lock:
        leftovers = list(_running)
    for store in leftovers:
        store.stop()
