"""Red-team reproductions (fleet ledger): each test FAILS on the current code and
names the defect it shows. Real Envoy + real Redis behind webdis, 127.0.0.1 only."""

from __future__ import annotations

import time

from tests.gateway import DEMO_KEY, Gateway, chat_body, demo_plugin_config, gateway_config, with_fleet_ledger
from tests.test_governance import digest

STORE_TIMEOUT_MS = 300
QUOTA_KEY = "sk-redteam-quota-1"
RATES_KEY = "sk-redteam-rates-1"


def plugin() -> dict:
    config = demo_plugin_config()
    tenants, keys = config["governance"]["tenants"], config["governance"]["keys"]
    tenants["quota"] = {"allowed_models": ["gpt-4o-mini"], "quotas": [{"window": "day", "requests": 3}]}
    keys.append({"name": "quota", "tenant": "quota", "sha256": digest(QUOTA_KEY)})
    tenants["rates"] = {"allowed_models": ["gpt-4o-mini"], "limits": {"rpm": 100}}
    keys.append({"name": "rates", "tenant": "rates", "sha256": digest(RATES_KEY)})
    return config


def gateway(envoy, mocks, fleet_store) -> Gateway:
    config = with_fleet_ledger(gateway_config(mocks, plugin()), fleet_store.webdis_port, replicas=1,
                               timeout_ms=STORE_TIMEOUT_MS)
    return Gateway(envoy(config), mocks, DEMO_KEY)


def ask(gateway: Gateway, key: str) -> int:
    headers = {"authorization": f"Bearer {key}", "connection": "close"}
    return gateway.chat(chat_body("hi", model="gpt-4o-mini", max_tokens=5), headers=headers).status_code


def tenant_spend(gateway: Gateway, tenant: str) -> dict:
    return {entry["tenant"]: entry for entry in gateway.view("/signalbox/spend")["tenants"]}[tenant]


def test_requests_refused_503_while_redis_hangs_still_burn_the_request_quota(envoy, mocks, fleet_store):
    """Defect: an admission that timed out is released with a settlement of
    `requests: 1` (SettleJob::new always sets it), so when Redis wakes and runs
    the queued admission, the 503'd request counts as used."""
    gw = gateway(envoy, mocks, fleet_store)
    assert ask(gw, QUOTA_KEY) == 200  # 1 of 3 used
    fleet_store.pause_redis()
    try:
        refused = [ask(gw, QUOTA_KEY) for _ in range(2)]
    finally:
        time.sleep(0.5)
        fleet_store.resume_redis()
    assert refused == [503, 503], refused  # fail closed: nothing served
    time.sleep(3)  # the release settlements reach Redis
    used = tenant_spend(gw, "quota")["quotas"][0]["used"]["requests"]
    later = [ask(gw, QUOTA_KEY) for _ in range(2)]
    assert later == [200, 200], (
        f"2 of 3 daily requests should remain after two 503s; got {later}, ledger used.requests={used}"
    )


def test_requests_served_on_the_local_fallback_never_reach_the_fleet_ledger(envoy, mocks, fleet_store):
    """Defect: while Redis is down a rate-limited tenant is served on local
    counters (Booked::Local{share}), and settled only in this Envoy's shared
    data; the fleet ledger (the spend view's source) never learns the spend."""
    gw = gateway(envoy, mocks, fleet_store)
    assert ask(gw, RATES_KEY) == 200
    fleet_store.stop_redis()
    try:
        served = [ask(gw, RATES_KEY) for _ in range(3)]
    finally:
        fleet_store.start_redis()
    assert served == [200, 200, 200], served
    deadline = time.monotonic() + 10
    ledger = {}
    while time.monotonic() < deadline:
        try:
            ledger = tenant_spend(gw, "rates")["ledger"].get("gpt-4o-mini", {})
            if ledger.get("requests", 0) >= 4:
                break
        except Exception:  # noqa: BLE001 - webdis reconnecting
            pass
        time.sleep(0.3)
    assert ledger.get("requests") == 4, f"4 requests served (and paid to the provider), ledger: {ledger}"
