"""Running mock providers: in-process on a background loop (tests), or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from .behaviors import Behavior
from .instance import ProviderInstance, RecordedRequest

_CALL_TIMEOUT_S = 10.0


class MockProviders:
    """Named mock provider listeners served by an asyncio loop on a daemon thread.

    Every method is called from the test's thread; the loop thread only serves sockets.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._instances: dict[str, ProviderInstance] = {}

    def __enter__(self) -> MockProviders:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, listeners: Iterable[str] | Mapping[str, int]) -> dict[str, int]:
        """Open listeners (names, or name -> port with 0 = OS-picked); may be called again to add more.

        Returns name -> port for the listeners opened by this call.
        """
        wanted = dict(listeners) if isinstance(listeners, Mapping) else dict.fromkeys(listeners, 0)
        clashes = set(wanted) & set(self._instances)
        if clashes:
            raise ValueError(f"listeners already started: {sorted(clashes)}")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="mock-providers", daemon=True)
            self._thread.start()
        opened = {}
        for name, port in wanted.items():
            instance = ProviderInstance(name)
            opened[name] = self._run(instance.listen(port))
            self._instances[name] = instance
        return opened

    def stop(self) -> None:
        """Close every listener and connection, then end the loop thread. Idempotent."""
        if self._loop is None:
            return
        try:
            self._run(_close_all(list(self._instances.values())))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_CALL_TIMEOUT_S)
            self._loop.close()
            self._loop, self._thread = None, None
            self._instances.clear()

    @property
    def ports(self) -> dict[str, int]:
        return {name: instance.port for name, instance in self._instances.items()}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.instance(name).port}"

    def instance(self, name: str) -> ProviderInstance:
        try:
            return self._instances[name]
        except KeyError:
            raise KeyError(f"no mock listener named {name!r}; started: {sorted(self._instances)}") from None

    def requests(self, name: str | None = None) -> list[RecordedRequest]:
        """Recorded requests of one listener, or of all listeners in arrival order."""
        if name is not None:
            return self.instance(name).requests()
        return sorted((r for i in self._instances.values() for r in i.requests()), key=lambda r: r.time)

    def wait_for_requests(self, name: str, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until a listener has recorded at least count requests (for asynchronous arrivals)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests(name)
            if len(seen) >= count:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name!r} recorded {len(seen)} requests, wanted {count} within {timeout}s")
            time.sleep(0.01)

    def clear(self, name: str | None = None) -> None:
        """Forget recorded requests (and the prompt cache) of one or every listener."""
        for instance in self._selected(name):
            instance.clear()

    def set_behavior(self, name: str, behavior: Behavior | None) -> None:
        """The default behavior for every later request to this listener (None = normal)."""
        self.instance(name).behaviors.set_default(behavior)

    def set_script(self, name: str, script: list[Behavior | None]) -> None:
        """Behaviors consumed one per request before the default applies again (None = normal)."""
        self.instance(name).behaviors.set_script(script)

    def reset_behavior(self, name: str | None = None) -> None:
        """Back to normal answers: clears default and script of one or every listener."""
        for instance in self._selected(name):
            instance.behaviors.clear()

    def _selected(self, name: str | None) -> list[ProviderInstance]:
        return list(self._instances.values()) if name is None else [self.instance(name)]

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT_S)


async def serve_forever(listeners: Mapping[str, int], announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM (the standalone `python3 -m tests.mocks` mode)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    instances = [ProviderInstance(name) for name in listeners]
    try:
        for instance in instances:
            port = await instance.listen(listeners[instance.name])
            announce(f"mock {instance.name} listening on http://127.0.0.1:{port}")
        await stop.wait()
    finally:
        await _close_all(instances)


async def _close_all(instances: list[ProviderInstance]) -> None:
    await asyncio.gather(*(instance.close() for instance in instances))
