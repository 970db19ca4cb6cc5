"""Red-team reproductions (availability): each test FAILS on the current code and
names the defect it shows. Real Envoy (two workers) + mocks, 127.0.0.1 only."""

from __future__ import annotations

import concurrent.futures
import json
import time

import requests

from tests.gateway import DEMO_KEY, chat_body

HEADERS = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json", "connection": "close"}


def test_one_4mb_word_stalls_a_worker_for_seconds(start_gateway):
    """Defect: the classifier's sampled scan is quadratic in the length of a
    single word. Scanner::read_word (classify/scan.rs) reads to the end of the
    word in the WHOLE text, not the window, so each of the ~4,000 1-KB sampling
    windows of a 4 MB word with no separator (or 1.3 MB of emoji) rescans the
    rest of it: ~10 s of Wasm CPU per request, during which the worker serves
    nobody. Any key holder (even a tiny tenant; the request is then refused
    400, so it costs nothing) can freeze every worker with one request each."""
    gateway = start_gateway()
    bomb = json.dumps(chat_body("a" * 4_000_000)).encode()

    def send_bomb(_):
        started = time.monotonic()
        response = requests.post(gateway.url + "/v1/chat/completions", data=bomb, headers=HEADERS, timeout=60)
        return response.status_code, time.monotonic() - started

    def small(_):
        started = time.monotonic()
        status = requests.post(gateway.url + "/v1/chat/completions", json=chat_body("hi"), headers=HEADERS, timeout=60).status_code
        return status, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        bombs = [pool.submit(send_bomb, index) for index in range(4)]  # spread over both workers
        time.sleep(1.0)
        innocent = list(pool.map(small, range(6)))
        bomb_results = [future.result() for future in bombs]
    slowest = max(seconds for _, seconds in innocent)
    assert slowest < 2.0 and max(s for _, s in bomb_results) < 2.0, (
        f"4 MB single-word bodies took {[f'{s:.1f}s' for _, s in bomb_results]} (status {[c for c, _ in bomb_results]}); "
        f"an innocent 'hi' meanwhile waited up to {slowest:.1f}s ({[f'{s:.1f}' for _, s in innocent]})"
    )
