"""The fleet ledger's unreserved charges (spend served on a replica's local
fallback while Redis was away) against the real store: Redis behind webdis,
scripts called as the filter calls them."""

from __future__ import annotations

from tools.fleet_store import FleetClient
from tests.test_fleet_store import NONE, NOON, Tenant, balances

MINUTE_MS = 60_000


def test_a_retried_unreserved_charge_counts_once_after_the_tombstone_is_swept(fleet_store):
    """A charge is retried by its Envoy for up to a
    day when its answer was lost; its id is remembered as long, so a retry six
    minutes later (after the 5-minute tombstone of ordinary settlements) answers
    `duplicate` and is counted once."""
    tenant = Tenant(FleetClient(fleet_store.url), quotas=[("day", NONE, NONE, 1_000_000)])
    now = NOON
    charge = (1, 2_000, 0, 0)
    assert tenant.settle("local", tokens=120, cost=2_000, clock=now, unreserved=charge)[0] == "settled"
    # A retry of the same charge, within the outbox's retry window (a day),
    # 6 minutes later (ended_ms_ago grows with the wait).
    later = now + 6 * MINUTE_MS
    retry = (1, 2_000 + 6 * MINUTE_MS, 0, 0)
    second = tenant.settle("local", tokens=120, cost=2_000, clock=later, unreserved=retry)
    spend = tenant.spend(clock=later)
    assert second[0] == "duplicate", (
        f"retried charge answered {second[0]!r}; day quota used={balances(spend)[0][0]}, "
        f"ledger={spend['ledger']['gpt-4o']}"
    )
