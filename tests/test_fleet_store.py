"""The fleet ledger against the real store: Redis 7 (shipped config, AOF) behind webdis, no mocks.

Scripts are called as the filter will call them (tools/fleet_store.py: POST EVALSHA, EVAL on
NOSCRIPT), with keys named as src/fleet/keys.rs names them. Load and fault figures are printed
(run with -s to see them); docs/fleet.md records them.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.harness.envoy import REPO_ROOT
from tools.fleet_store import FleetClient, command_body, script_text

DAY_MS = 86_400_000
MINUTE_MS = 60_000
# 2026-11-24T12:00:00Z, the unit tests' NOON.
NOON = 1_795_521_600_000
NONE = -1


@dataclass
class Tenant:
    """One tenant's policy, and its calls in the scripts' argument layout."""

    client: FleetClient
    name: str = "acme"
    user: str | None = None
    limits: tuple[int, int] = (NONE, NONE)
    user_limits: tuple[int, int] = (NONE, NONE)
    # (period, requests cap, tokens cap, micro-USD cap)
    quotas: list[tuple[str, int, int, int]] = field(default_factory=list)
    alert_permille: int = 800

    @property
    def keys(self) -> list[str]:
        base = f"sb:{{{self.name}}}:"
        fixed = [f"{base}res", f"{base}due", f"{base}ledger", f"{base}rate", f"{base}user:{self.user or ''}"]
        return fixed + [f"{base}quota:{index}" for index in range(len(self.quotas))]

    def _quota_arguments(self) -> list:
        return [len(self.quotas), *[value for quota in self.quotas for value in quota]]

    def admit(self, reservation: str, tokens: int = 100, cost: int = 1_000, ttl_ms: int = 30_000, clock: int = 0):
        user_limits = self.user_limits if self.user else (NONE, NONE)
        arguments = [reservation, ttl_ms, clock, 1, tokens, cost, *self.limits, *user_limits, *self._quota_arguments()]
        return self.client.run("admit", self.keys, arguments)

    def settle(self, reservation: str, tokens: int, cost: int, model: str = "gpt-4o", clock: int = 0, estimated: int = 0,
               requests: int = 1, unreserved: tuple[int, int, int, int] = (0, 0, 0, 0)):
        """`requests=0, tokens=0, cost=0` and no model: a release. `unreserved`: (1, ended_ms_ago,
        tenant window, user window) charges without a reservation (spend served on the local fallback)."""
        usage = [tokens // 2, 0, 0, tokens - tokens // 2]
        ledger = [1, model, *usage, cost, estimated] if model else [0]
        arguments = [reservation, clock, requests, tokens, cost, self.alert_permille, *self._quota_arguments(), *ledger,
                     *unreserved]
        return self.client.run("settle", self.keys, arguments)

    def _spend_arguments(self, models: tuple[str, ...], clock: int = 0) -> list:
        return [clock, *self._quota_arguments(), len(models), *models]

    def spend_by_sha(self) -> bytes:
        """The raw EVALSHA body of a spend call, to see webdis's answer as it is."""
        sha = hashlib.sha1(script_text("spend").encode()).hexdigest()
        return command_body("EVALSHA", sha, len(self.keys), *self.keys, *self._spend_arguments(()))

    def spend(self, models: tuple[str, ...] = ("gpt-4o",), clock: int = 0) -> dict:
        reply = self.client.run("spend", self.keys, self._spend_arguments(models, clock))
        assert reply[0] == "spend"
        values = reply[2:]
        quotas = []
        for _ in self.quotas:
            row, values = values[:9], values[9:]
            quotas.append(
                {"period": row[0], "resets_in_ms": row[1], "used": row[2:5], "reserved": row[5:8], "alerted": row[8]}
            )
        ledger = {}
        for model in models:
            ledger[model], values = values[:7], values[7:]
        assert len(values) == 3
        return {"now_ms": reply[1], "quotas": quotas, "ledger": ledger, "expired": values}


def balances(spend: dict) -> list:
    """What a quota holds, without the clock-dependent fields."""
    return [(quota["used"], quota["reserved"], quota["alerted"]) for quota in spend["quotas"]]


def redis_time_ms(store) -> int:
    with store.admin() as admin:
        seconds, micros = admin.command("TIME")
    return int(seconds) * 1000 + int(micros) // 1000


def test_concurrent_admissions_never_overshoot_the_cost_cap(fleet_store):
    """200 clients at once against a $1 daily budget, 7,000 micro-USD each: admitted estimates
    never sum past the cap, so settled spend (actual ≤ estimate) never does either."""
    cap, estimate = 1_000_000, 7_000
    start = threading.Barrier(200)

    def one(index: int) -> str:
        client = FleetClient(fleet_store.url, timeout=30)
        tenant = Tenant(client, quotas=[("day", NONE, NONE, cap)])
        start.wait(timeout=30)
        reply = tenant.admit(f"r{index}", cost=estimate)
        if reply[0] == "admitted":
            assert tenant.settle(f"r{index}", tokens=90, cost=estimate - index % 3)[0] == "settled"
        client.close()
        return reply[0]

    with ThreadPoolExecutor(200) as pool:
        outcomes = list(pool.map(one, range(200)))
    admitted = outcomes.count("admitted")
    assert admitted == cap // estimate, outcomes
    assert outcomes.count("refused") == 200 - admitted
    spend = Tenant(FleetClient(fleet_store.url), quotas=[("day", NONE, NONE, cap)]).spend()
    used, reserved = spend["quotas"][0]["used"], spend["quotas"][0]["reserved"]
    assert used[0] == admitted and reserved == [0, 0, 0]
    assert used[2] <= cap


def test_overshoot_of_a_token_cap_is_bounded_by_what_actual_usage_exceeds_its_estimate(fleet_store):
    """Reservations stop admission at the cap; only actual > estimate can pass it, by at most
    the excess of the admitted requests (here 10 tokens each)."""
    cap, estimate, excess = 10_000, 100, 10

    def one(index: int) -> str:
        client = FleetClient(fleet_store.url, timeout=30)
        tenant = Tenant(client, quotas=[("month", NONE, cap, NONE)])
        reply = tenant.admit(f"t{index}", tokens=estimate, cost=0)
        if reply[0] == "admitted":
            tenant.settle(f"t{index}", tokens=estimate + excess, cost=0)
        client.close()
        return reply[0]

    with ThreadPoolExecutor(64) as pool:
        outcomes = list(pool.map(one, range(200)))
    admitted = outcomes.count("admitted")
    used = Tenant(FleetClient(fleet_store.url), quotas=[("month", NONE, cap, NONE)]).spend()["quotas"][0]["used"]
    assert used[1] == admitted * (estimate + excess)
    assert cap < used[1] <= cap + admitted * excess


def test_settlement_replaces_the_reservation_by_actual_usage_and_is_idempotent(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), user="alice", quotas=[("day", 100, 100_000, 5_000_000)])
    assert tenant.admit("r1", tokens=500, cost=9_000)[0] == "admitted"
    before = tenant.spend()["quotas"][0]
    assert before["reserved"] == [1, 500, 9_000] and before["used"] == [0, 0, 0]

    assert tenant.settle("r1", tokens=120, cost=2_000)[0] == "settled"
    after = tenant.spend()
    assert after["quotas"][0]["reserved"] == [0, 0, 0]
    assert after["quotas"][0]["used"] == [1, 120, 2_000]
    # requests, input, cached input, cache write, output, micro-USD
    assert after["ledger"]["gpt-4o"] == [1, 60, 0, 0, 60, 2_000, 0]

    assert tenant.settle("r1", tokens=120, cost=2_000)[0] == "duplicate"
    assert tenant.admit("r1", tokens=500, cost=9_000)[0] == "closed", "a late admit books nothing"
    assert balances(tenant.spend()) == balances(after)
    assert tenant.spend()["ledger"] == after["ledger"]

    # A settlement that overtook its admission: the admission then books nothing.
    assert tenant.settle("r2", tokens=1, cost=1)[0] == "unknown"
    assert tenant.settle("r2", tokens=1, cost=1)[0] == "unknown"
    assert tenant.admit("r2")[0] == "closed"
    assert balances(tenant.spend()) == balances(after)


def test_a_retried_admission_books_once(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), limits=(10, NONE), quotas=[("day", 10, NONE, NONE)])
    first = tenant.admit("same", tokens=50)
    again = tenant.admit("same", tokens=50)
    assert first[0] == again[0] == "admitted"
    assert first[3] == again[3] == 9, "one request counted in the window"
    assert tenant.spend()["quotas"][0]["reserved"][0] == 1


def release(tenant: Tenant, reservation: str, clock: int = 0):
    """What the filter sends for a request it never served (refused after a lost admission answer)."""
    return tenant.settle(reservation, tokens=0, cost=0, model="", clock=clock, requests=0)


def test_a_release_gives_the_reservation_back_and_counts_nothing(fleet_store):
    """A request refused after its admission's answer was lost uses no quota and no window,
    whether the admission ran before the release or arrives after it."""
    tenant = Tenant(FleetClient(fleet_store.url), limits=(2, NONE), quotas=[("day", 3, NONE, NONE)])
    now = NOON
    assert tenant.admit("served", clock=now)[0] == "admitted"
    assert tenant.settle("served", tokens=100, cost=1_000, clock=now)[0] == "settled"
    before = tenant.spend(clock=now)
    # The admission ran (Redis was slow), then the release came.
    assert tenant.admit("late", clock=now)[3] == 0, "the window is full while it is reserved"
    assert release(tenant, "late", clock=now)[:4] == ["settled", now, 333, 0]
    assert release(tenant, "late", clock=now)[0] == "duplicate"
    # The release overtook its admission: the admission books nothing.
    assert release(tenant, "never", clock=now)[0] == "unknown"
    assert tenant.admit("never", clock=now)[0] == "closed"
    after = tenant.spend(clock=now)
    assert balances(after) == balances(before) == [([1, 100, 1_000], [0, 0, 0], 0)]
    assert after["ledger"] == before["ledger"]
    admitted = tenant.admit("next", clock=now)
    assert admitted[0] == "admitted" and admitted[3] == 0, "the released request left the window"


def test_a_charge_without_reservation_counts_once(fleet_store):
    """Spend served on a replica's local fallback reaches the ledger, quotas and windows once,
    however often the charge is retried, and its unanswered admission then books nothing."""
    tenant = Tenant(FleetClient(fleet_store.url), user="alice", limits=(5, NONE), user_limits=(3, NONE),
                    quotas=[("day", 10, NONE, 1_000_000)])
    now = NOON
    charge = (1, 2_000, 1, 1)
    assert tenant.settle("local", tokens=120, cost=2_000, clock=now, unreserved=charge)[:4] == ["settled", now, 100, 0]
    assert tenant.settle("local", tokens=120, cost=2_000, clock=now, unreserved=charge)[0] == "duplicate"
    assert tenant.admit("local", clock=now)[0] == "closed", "its late admission books nothing"
    spend = tenant.spend(clock=now)
    assert balances(spend) == [([1, 120, 2_000], [0, 0, 0], 0)]
    assert spend["ledger"]["gpt-4o"] == [1, 60, 0, 0, 60, 2_000, 0]
    admitted = tenant.admit("next", clock=now)
    assert admitted[3] == 3 and admitted[5] == 1, "counted in both windows (5 and 3 a minute)"

    # Its admission arrived first after all: the charge settles that reservation.
    assert tenant.admit("raced", tokens=500, cost=9_000, clock=now)[0] == "admitted"
    assert tenant.settle("raced", tokens=50, cost=500, clock=now, unreserved=charge)[0] == "settled"
    assert balances(tenant.spend(clock=now)) == [([2, 170, 2_500], [1, 100, 1_000], 0)]

    # Served yesterday: nothing left to enforce in today's quota, but the ledger has it.
    yesterday = (1, DAY_MS, 0, 0)
    assert tenant.settle("old", tokens=10, cost=100, clock=now, unreserved=yesterday)[0] == "settled"
    spend = tenant.spend(clock=now)
    assert balances(spend) == [([2, 170, 2_500], [1, 100, 1_000], 0)]
    assert spend["ledger"]["gpt-4o"][0] == 3


def test_an_unsettled_reservation_expires_after_its_ttl_and_is_charged_in_full(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("day", NONE, NONE, 1_000_000)])
    assert tenant.admit("dead-envoy", tokens=400, cost=30_000, ttl_ms=300)[0] == "admitted"
    assert tenant.spend()["quotas"][0]["reserved"] == [1, 400, 30_000], "still in flight"
    time.sleep(0.4)
    spend = tenant.spend()
    assert spend["quotas"][0]["reserved"] == [0, 0, 0]
    assert spend["quotas"][0]["used"] == [1, 400, 30_000], "charged in full"
    assert spend["expired"] == [1, 400, 30_000]
    assert tenant.settle("dead-envoy", tokens=10, cost=10)[0] == "expired", "too late to change the charge"
    assert balances(tenant.spend()) == balances(spend)


def test_periods_follow_redis_clock(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("day", 5, NONE, NONE), ("month", 5, NONE, NONE)])
    before = redis_time_ms(fleet_store)
    spend = tenant.spend()
    after = redis_time_ms(fleet_store)
    assert before <= spend["now_ms"] <= after
    now = spend["now_ms"]
    day, month = spend["quotas"]
    assert day["period"] == now // DAY_MS
    assert day["resets_in_ms"] == (now // DAY_MS + 1) * DAY_MS - now
    utc = time.gmtime(now / 1000)
    assert month["period"] == utc.tm_year * 12 + utc.tm_mon - 1
    next_month = (utc.tm_year + utc.tm_mon // 12, utc.tm_mon % 12 + 1)
    assert month["resets_in_ms"] == calendar.timegm((*next_month, 1, 0, 0, 0)) * 1000 - now


def test_quotas_roll_at_utc_midnight_and_month_end(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("day", 2, NONE, NONE), ("month", 3, NONE, NONE)])
    # 2024-02-28T23:59:59.999Z, then the leap day, then March.
    last_ms_of_feb_28 = calendar.timegm((2024, 2, 29, 0, 0, 0)) * 1000 - 1
    for index in range(2):
        assert tenant.admit(f"d{index}", clock=last_ms_of_feb_28)[0] == "admitted"
    refused = tenant.admit("d2", clock=last_ms_of_feb_28)
    assert refused[2:6] == ["quota", 0, "requests", 1], "the day ends in 1 ms"
    assert tenant.admit("d3", clock=last_ms_of_feb_28 + 1)[0] == "admitted", "a new day, the same month"
    refused = tenant.admit("d4", clock=last_ms_of_feb_28 + 2)
    assert refused[2:5] == ["quota", 1, "requests"]
    assert refused[5] == DAY_MS - 1, "February 2024 has 29 days"
    march = calendar.timegm((2024, 3, 1, 0, 0, 0)) * 1000
    assert tenant.admit("d5", clock=march)[0] == "admitted"


def test_the_soft_alert_fires_once_per_period(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("month", NONE, NONE, 1_000_000)])
    alerts = []
    for index in range(10):
        assert tenant.admit(f"a{index}", cost=100_000, clock=NOON)[0] == "admitted"
        reply = tenant.settle(f"a{index}", tokens=10, cost=100_000, clock=NOON)
        alerts.extend(reply[4:])
    assert alerts == [0, 2026 * 12 + 10, 800], "one alert, at 80 %, in November 2026"
    assert tenant.admit("over", cost=1, clock=NOON)[2:5] == ["quota", 0, "cost"], "the hard cap holds"
    next_month = NOON + 40 * DAY_MS
    assert tenant.admit("dec", cost=900_000, clock=next_month)[0] == "admitted"
    assert tenant.settle("dec", tokens=1, cost=900_000, clock=next_month)[3] == 1, "a new period alerts again"


def test_the_sliding_minute_matches_local_admission(fleet_store):
    """The cases of src/govern/window.rs, on the same clock values."""
    tenant = Tenant(FleetClient(fleet_store.url), limits=(3, NONE))
    start = 10 * MINUTE_MS
    for offset in range(3):
        assert tenant.admit(f"w{offset}", clock=start + offset)[0] == "admitted"
    refused = tenant.admit("w3", clock=start + 10)
    assert refused[2:5] == ["tenant", NONE, "requests"]
    assert 0 < refused[5] <= 2 * MINUTE_MS
    assert refused[7] == 0, "no requests left"
    # Half way through the next minute half of the old one still counts: 1.5 -> room for 1.
    assert tenant.admit("w4", clock=start + MINUTE_MS + MINUTE_MS // 2)[0] == "admitted"
    # The wait it gives really makes room.
    later = start + 7 * MINUTE_MS + 5_000
    for index in range(3):
        tenant.admit(f"x{index}", clock=later)
    wait = tenant.admit("x3", clock=later + 1)[5]
    assert tenant.admit("x4", clock=later + 1 + wait)[0] == "admitted"

    tokens = Tenant(FleetClient(fleet_store.url), name="tok", user="bob", user_limits=(NONE, 1_000))
    now = 3 * MINUTE_MS
    assert tokens.admit("t1", tokens=800, clock=now)[6] == 200
    assert tokens.admit("t2", tokens=300, clock=now)[2:5] == ["user", NONE, "tokens"]
    tokens.settle("t1", tokens=100, cost=0, clock=now + 10)
    admitted = tokens.admit("t3", tokens=300, clock=now + 20)
    assert admitted[0] == "admitted" and admitted[6] == 600
    alone = tokens.admit("t4", tokens=1_001, clock=now + 30)
    assert alone[4:6] == ["tokens", NONE], "a request alone over the limit never fits"


def test_after_a_redis_restart_evalsha_gets_noscript_and_eval_restores_it(fleet_store):
    client = FleetClient(fleet_store.url)
    tenant = Tenant(client, quotas=[("day", NONE, NONE, 1_000_000)])
    assert tenant.admit("before")[0] == "admitted"
    fleet_store.stop_redis()
    fleet_store.start_redis()

    body = tenant.spend_by_sha()
    recovered_after = time.monotonic()
    while True:  # webdis reconnects every 100 ms
        status, reply = client.post(body)
        if status != 503 or time.monotonic() - recovered_after > 2:
            break
        time.sleep(0.01)
    recovered_after = time.monotonic() - recovered_after
    print(f"\nwebdis answered again {recovered_after * 1000:.0f} ms after Redis was back")
    assert status == 200
    assert reply["EVALSHA"][0] is False and reply["EVALSHA"][1].startswith("NOSCRIPT")

    assert tenant.spend()["quotas"][0]["reserved"][0] == 1, "EVAL fallback; the reservation survived"
    status, reply = client.post(body)
    assert status == 200 and reply["EVALSHA"][0] == "spend", "EVALSHA works again"


def test_settled_spend_survives_a_redis_crash(fleet_store):
    with fleet_store.admin() as admin:
        assert admin.command("CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
        assert admin.command("CONFIG", "GET", "appendfsync") == ["appendfsync", "everysec"]
        assert admin.command("CONFIG", "GET", "bind") == ["bind", "127.0.0.1"]
        assert admin.command("CONFIG", "GET", "protected-mode") == ["protected-mode", "yes"]
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("month", NONE, NONE, 10_000_000)])
    assert tenant.admit("kept", tokens=300, cost=4_000)[0] == "admitted"
    assert tenant.settle("kept", tokens=250, cost=3_500)[0] == "settled"
    time.sleep(1.5)  # appendfsync everysec: what is older than a second is on disk
    fleet_store.stop_redis(kill=True)
    fleet_store.start_redis()
    deadline = time.monotonic() + 5
    while True:
        try:
            spend = tenant.spend()
            break
        except RuntimeError:  # 503 until webdis has reconnected
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert spend["quotas"][0]["used"] == [1, 250, 3_500]
    assert spend["ledger"]["gpt-4o"][5] == 3_500


def test_only_the_ledger_scripts_get_through(fleet_store):
    client = FleetClient(fleet_store.url)
    tenant = Tenant(client, quotas=[("day", NONE, NONE, 1_000)])
    tenant.admit("keep-me")
    for command in (["GET", "sb:{acme}:res"], ["SET", "x", "1"], ["FLUSHALL"], ["KEYS", "*"], ["CONFIG", "GET", "*"]):
        status, reply = client.post(command_body(*command))
        assert status == 403, (command, status, reply)
        assert reply == b""
    # GET with the command in the path is refused alike.
    client._connection.request("GET", "/GET/x")
    response = client._connection.getresponse()
    assert response.status == 403 and response.read() == b""
    # EVAL could call anything; Redis's ACL on webdis's user stops it there.
    for script, keys in (("return redis.call('FLUSHALL')", []), ("return redis.call('GET', KEYS[1])", ["other"])):
        status, reply = client.post(command_body("EVAL", script, len(keys), *keys))
        assert status == 200 and reply["EVAL"][0] is False, reply
    with fleet_store.admin() as admin:
        assert admin.command("HLEN", "sb:{acme}:res") == 1, "nothing was flushed"


def _timed_post(client: FleetClient, body: bytes) -> tuple[object, float]:
    started = time.perf_counter()
    try:
        status, _ = client.post(body)
    except (TimeoutError, OSError) as error:
        status = type(error).__name__
    return status, (time.perf_counter() - started) * 1000


def _answering(client: FleetClient, body: bytes, timeout: float = 5.0) -> bool:
    """Whether webdis answers 200 within `timeout` (it reconnects to a restarted Redis every 100 ms)."""
    deadline = time.monotonic() + timeout
    while _timed_post(client, body)[0] != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_webdis_tells_a_down_or_hung_redis_within_a_100_ms_timeout(fleet_store):
    tenant = Tenant(FleetClient(fleet_store.url))
    tenant.spend()
    body = tenant.spend_by_sha()
    client = FleetClient(fleet_store.url, timeout=0.1)
    files = fleet_store.webdis_open_files()

    fleet_store.stop_redis()
    down = [_timed_post(client, body) for _ in range(20)]
    assert {status for status, _ in down} == {503}
    assert max(ms for _, ms in down) < 100
    print(f"\nRedis down: 503 in p50 {statistics.median(ms for _, ms in down):.2f} ms, max {max(ms for _, ms in down):.2f} ms")

    fleet_store.start_redis()
    assert _answering(client, body), "webdis reconnected to the restarted Redis"
    fleet_store.pause_redis()
    try:
        status, ms = _timed_post(client, body)
    finally:
        fleet_store.resume_redis()
    print(f"Redis hung (SIGSTOP): {status} after {ms:.0f} ms (webdis has no timeout of its own)")
    assert status == "TimeoutError" and ms < 150

    client = FleetClient(fleet_store.url, timeout=2)
    for _ in range(5):  # restarts must not leak connections
        fleet_store.stop_redis(kill=True)
        fleet_store.start_redis()
        time.sleep(0.25)
    assert _answering(client, body)
    assert fleet_store.webdis_open_files() <= files + 2, "webdis leaks descriptors across restarts"


@pytest.mark.parametrize("clients", [1, 32])
def test_webdis_throughput_with_keep_alive_clients(fleet_store, clients):
    """Admit-then-settle pairs through webdis over keep-alive connections; bounded in count and time."""
    calls_per_client = 1_000 if clients == 1 else 60
    latencies: list[float] = []
    errors: list[object] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        client = FleetClient(fleet_store.url, timeout=5)
        tenant = Tenant(client, name=f"load{index % 4}", limits=(1_000_000, NONE), quotas=[("day", NONE, NONE, 10**12)])
        tenant.admit("warm-up")
        mine = []
        for call in range(calls_per_client // 2):
            for step in ("admit", "settle"):
                started = time.perf_counter()
                if step == "admit":
                    reply = tenant.admit(f"c{index}-{call}")
                else:
                    reply = tenant.settle(f"c{index}-{call}", tokens=80, cost=900)
                mine.append((time.perf_counter() - started) * 1000)
                if reply[0] not in ("admitted", "settled"):
                    errors.append(reply)
        client.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.perf_counter() - started
    assert not errors
    latencies.sort()
    figures = {
        "clients": clients,
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
    }
    print("\nwebdis load:", json.dumps(figures))
    # Only a sanity bound: the figures swing with whatever else shares the machine.
    assert figures["p50_ms"] < 100, "the median call must fit the filter's 100 ms timeout"


@pytest.mark.timeout(900)  # may have to compile the example first
def test_the_rust_fleet_core_round_trips_through_webdis(fleet_store):
    """src/fleet's requests, as the filter will send them, and its parsing of the real answers."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--example", "fleet_roundtrip"], cwd=REPO_ROOT, check=True, timeout=850
    )
    driver = subprocess.Popen(
        [str(REPO_ROOT / "target" / "debug" / "examples" / "fleet_roundtrip")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    client = FleetClient(fleet_store.url)
    results = {}
    try:
        for line in driver.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "CALL":
                status, reply = client.post(rest.encode())
                driver.stdin.write(f"{status} {json.dumps(reply) if isinstance(reply, dict) else ''}\n")
                driver.stdin.flush()
            else:
                name, _, result = rest.partition(" ")
                results[name] = result
    finally:
        driver.stdin.close()
        assert driver.wait(timeout=10) == 0
    assert results["admit"].startswith("Ok(Admitted(Admitted {"), results
    assert "by: Quota(0), dimension: \"cost\"" in results["admit-over-budget"], results
    assert results["settle"].startswith("Ok(Settled {"), results
    assert results["settle-again"].startswith("Ok(Duplicate {"), results
    assert "cost_micros: 900" in results["spend"], results
    with fleet_store.admin() as admin:
        assert admin.command("EXISTS", "sb:{re%7Bsearch%7D%3Ax%25}:user:a/b.c?+%25") == 1, "keys as keys.rs names them"


def test_racing_rollout_proposals_from_one_version_store_exactly_one(fleet_store):
    key = "sb:rollout:{simple:fresh}"
    idle_ms = 30 * DAY_MS

    def propose(index: int) -> list:
        client = FleetClient(fleet_store.url, timeout=30)
        try:
            return client.run("rollout", [key], [0, f"{index:02x}", idle_ms, f"caller-{index}", 1])
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(propose, range(8)))
    stored = [reply for reply in replies if reply[0] == 1]
    assert len(stored) == 1 and stored[0][:3] == [1, 1, ""] and stored[0][3] == 1, replies
    winner = replies.index(stored[0])
    assert all(reply == [0, 1, f"{winner:02x}", 0] for reply in replies if reply[0] == 0), replies
    client = FleetClient(fleet_store.url)
    # Reading (-1) changes nothing; a proposal from the current version is stored.
    assert client.run("rollout", [key], [-1, "ff", idle_ms, "reader", 1]) == [0, 1, f"{winner:02x}", 0]
    assert client.run("rollout", [key], [1, "aa", idle_ms, "reader", 2]) == [1, 2, "", 2]
    assert client.run("rollout", [key], [1, "bb", idle_ms, "reader", 3]) == [0, 2, "aa", 2]
    with fleet_store.admin() as admin:
        assert 0 < int(admin.command("PTTL", key)) <= idle_ms


def test_a_lost_rollout_proposal_is_settled_by_the_callers_next_call(fleet_store):
    key = "sb:rollout:{simple:fresh}"
    client = FleetClient(fleet_store.url)
    # Proposal 5 was sent and its answer lost; call 6 (a read) says whether it landed.
    assert client.run("rollout", [key], [0, "aa", DAY_MS, "vm", 5])[0] == 1
    assert client.run("rollout", [key], [-1, "", DAY_MS, "vm", 6])[3] == 5, "it landed"
    # Proposal 7 lost and not yet run when read 8 is answered: it can never land after.
    assert client.run("rollout", [key], [-1, "", DAY_MS, "vm", 8])[3] == 5
    late = client.run("rollout", [key], [1, "bb", DAY_MS, "vm", 7])
    assert late == [0, 1, "aa", 5], late
    # A version that is not an integer reads as one and is overwritten, not wedged.
    with fleet_store.admin() as admin:
        admin.command("HSET", key, "v", "1.5")
    read = client.run("rollout", [key], [-1, "", DAY_MS, "other", 1])
    assert read[:2] == [0, 1], read
    assert client.run("rollout", [key], [read[1], "cc", DAY_MS, "other", 2])[0] == 1


def test_a_rate_call_whose_answer_was_lost_is_settled_as_yours_or_fenced_off(fleet_store):
    client = FleetClient(fleet_store.url)
    key, other = "sb:{acme}:fb:answer", "sb:{acme}:fb:other"
    assert client.run("feedback", [key, other], ["remember", DAY_MS, "aa", "bb"]) == ["remembered", 2]
    # Call 1 counted the rating, its answer was lost: settling says so, as often as asked.
    assert client.run("feedback", [key], ["rate", DAY_MS, "", "vm-1"]) == ["counted", "aa"]
    assert client.run("feedback", [key], ["rate", DAY_MS, "", "vm-2"]) == ["again", ""]
    assert client.run("feedback", [key], ["settle", DAY_MS, "vm-1"]) == ["yours", "aa"]
    assert client.run("feedback", [key], ["settle", DAY_MS, "vm-1"]) == ["yours", "aa"]
    # Call 2 found it rated: not its to count.
    assert client.run("feedback", [key], ["settle", DAY_MS, "vm-2"]) == ["fenced", ""]
    # Call 3 is settled before it runs: fenced off, it counts nothing when it does; a later call still can.
    assert client.run("feedback", [other], ["settle", DAY_MS, "vm-3"]) == ["fenced", ""]
    assert client.run("feedback", [other], ["rate", DAY_MS, "bb", "vm-3"]) == ["fenced", ""]
    assert client.run("feedback", [other], ["settle", DAY_MS, "vm-3"]) == ["fenced", ""]
    assert client.run("feedback", [other], ["rate", DAY_MS, "", "vm-4"]) == ["counted", "bb"]
    # A call fenced off on an answer Redis does not know: the fence alone is forgotten after keep_ms,
    # and an answer that arrives meanwhile is remembered as usual.
    fenced_only = "sb:{acme}:fb:unknown"
    assert client.run("feedback", [fenced_only], ["settle", MINUTE_MS, "vm-5"]) == ["fenced", ""]
    assert client.run("feedback", [fenced_only], ["rate", MINUTE_MS, "cc", "vm-5"]) == ["fenced", ""]
    with fleet_store.admin() as admin:
        assert 0 < int(admin.command("PTTL", fenced_only)) <= MINUTE_MS
    assert client.run("feedback", [fenced_only], ["remember", DAY_MS, "cc"]) == ["remembered", 1]
    assert client.run("feedback", [fenced_only], ["rate", DAY_MS, "", "vm-6"]) == ["counted", "cc"]
