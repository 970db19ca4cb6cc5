"""Fault-injection behaviors: validation, per-instance default + script, body cutting.

A behavior is a plain dict (JSON-friendly, so the same value works from Python,
from POST /__mock/behavior and from the x-mock-fault header); None or {} means
"answer normally". Keys:

  status: 400..599        answer with this error in the called provider's error shape
  message: str            error message for "status" (default: reason phrase)
  retry_after: seconds    with "status": a Retry-After header (and Gemini RetryInfo)
  hang: true              read the request, never answer; hold the socket until the
                          client leaves (or 120 s)
  reset: true             read the request, then TCP RST with no response bytes
  delay_ms: N             wait before the response headers
  first_token_delay_ms: N wait between the headers and the first body event
  chunk_delay_ms: N       wait between body events
  split: "every-byte" | "random" | N
                          write the body in pieces of 1 / 1..16 / N bytes, ~1 ms apart
  reset_after_events: K   send headers and K body events, then TCP RST
                          (a non-streamed body counts as one event)
  spend_allowance: true   report usage as a provider that honours `n` and uses
                          every answer's whole `max_tokens` (OpenAI format; 4096
                          per answer without one): what the gateway must bill
  say: str                the model's answer is this text instead of the tagged echo
                          (still cut at the request's max_tokens, words counted as tokens)
  usage: object           OpenAI chat only: report this `usage` object as it is, odd
                          values included (negative, quoted, fractional counts)
  when_header: {name: value}
                          apply the rest only to requests carrying these exact
                          header values (e.g. one API key of several); others
                          are answered normally
"""

from __future__ import annotations

import random
import threading
from collections import deque
from typing import Any

Behavior = dict[str, Any]

_NON_NEGATIVE_NUMBERS = ("retry_after", "delay_ms", "first_token_delay_ms", "chunk_delay_ms")
KNOWN_KEYS = frozenset(
    {
        "status",
        "message",
        "hang",
        "reset",
        "split",
        "reset_after_events",
        "spend_allowance",
        "when_header",
        "say",
        "usage",
        *_NON_NEGATIVE_NUMBERS,
    }
)
# Gap between split pieces, so they leave as separate TCP segments and are read separately.
SPLIT_GAP_S = 0.001
_RANDOM_PIECE_MAX = 16


def validate(behavior: Behavior | None) -> Behavior:
    """Return a checked copy; raise ValueError so typos fail loudly instead of being ignored."""
    if behavior is None:
        return {}
    if not isinstance(behavior, dict):
        raise ValueError(f"a behavior must be an object or null, got {behavior!r}")
    unknown = set(behavior) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"unknown behavior keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    status = behavior.get("status")
    if status is not None and not (_is_int(status) and 400 <= status <= 599):
        raise ValueError(f"status must be an error status (int in 400..599), got {status!r}")
    for key in ("hang", "reset", "spend_allowance"):
        if not isinstance(behavior.get(key, False), bool):
            raise ValueError(f"{key} must be true or false, got {behavior[key]!r}")
    for key in _NON_NEGATIVE_NUMBERS:
        value = behavior.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"{key} must be a non-negative number, got {value!r}")
    if not isinstance(behavior.get("say", ""), str):
        raise ValueError(f"say must be a string, got {behavior['say']!r}")
    if not isinstance(behavior.get("usage", {}), dict):
        raise ValueError(f"usage must be an object, got {behavior['usage']!r}")
    events = behavior.get("reset_after_events")
    if events is not None and not (_is_int(events) and events >= 0):
        raise ValueError(f"reset_after_events must be a non-negative int, got {events!r}")
    when = behavior.get("when_header")
    if when is not None and not (isinstance(when, dict) and all(isinstance(v, str) for v in when.values())):
        raise ValueError(f"when_header must map header names to string values, got {when!r}")
    split = behavior.get("split")
    if split is not None and split not in ("every-byte", "random") and not (_is_int(split) and split > 0):
        raise ValueError(f'split must be "every-byte", "random" or a positive int, got {split!r}')
    return dict(behavior)


def applies_to(behavior: Behavior, header) -> bool:
    """Whether a behavior's when_header condition (if any) holds; header(name) looks one up."""
    return all(header(name.lower()) == value for name, value in behavior.get("when_header", {}).items())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cut(data: bytes, split: str | int | None, rng: random.Random) -> list[bytes]:
    """Cut data into the pieces that are written to the socket one by one."""
    if not split:
        return [data]
    pieces, start = [], 0
    while start < len(data):
        if split == "every-byte":
            size = 1
        elif split == "random":
            size = rng.randint(1, _RANDOM_PIECE_MAX)
        else:
            size = split
        pieces.append(data[start : start + size])
        start += size
    return pieces


class BehaviorBook:
    """A default behavior plus a script consumed one entry per request (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default: Behavior = {}
        self._script: deque[Behavior] = deque()

    def set_default(self, behavior: Behavior | None) -> None:
        checked = validate(behavior)
        with self._lock:
            self._default = checked

    def set_script(self, script: list[Behavior | None]) -> None:
        if not isinstance(script, list):
            raise ValueError("a script must be a list of behaviors (null = normal)")
        checked = [validate(b) for b in script]
        with self._lock:
            self._script = deque(checked)

    def configure(self, spec: dict) -> None:
        """Apply {"default": b, "script": [...]} (either key optional) or a bare behavior as default."""
        if not isinstance(spec, dict):
            raise ValueError("behavior spec must be a JSON object")
        if spec and set(spec) <= {"default", "script"}:
            if "default" in spec:
                self.set_default(spec["default"])
            if "script" in spec:
                self.set_script(spec["script"])
        else:
            self.set_default(spec)

    def clear(self) -> None:
        with self._lock:
            self._default, self._script = {}, deque()

    def next(self) -> Behavior:
        """The behavior for the next request: the script's head if any, else the default."""
        with self._lock:
            return self._script.popleft() if self._script else dict(self._default)

    def snapshot(self) -> dict:
        with self._lock:
            return {"default": dict(self._default), "script": list(self._script)}
