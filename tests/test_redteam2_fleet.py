"""Red team 2: the fleet ledger's unreserved charge against the real store
(Redis behind webdis, scripts called as the filter calls them)."""

from __future__ import annotations

from tests.harness.fleet import FleetClient
from tests.test_fleet_store import NONE, NOON, Tenant, balances

MINUTE_MS = 60_000


def test_a_retried_unreserved_charge_counts_once_after_the_tombstone_is_swept(fleet_store):
    """DEFECT (double charge): a charge for spend served on the local
    fallback is retried by the outbox for up to a day (CHARGE_KEEP_MS), but
    the id it closes is remembered only TOMBSTONE_MS = 5 minutes. A charge
    that Redis ran but whose answer was lost (webdis 504 at timeout_ms, Redis
    then unreachable for a while) is retried after Redis is back; once the
    tombstone is swept the retry finds no record, and being `unreserved` it
    charges again instead of answering `duplicate`.

    Observed: the second charge (6 minutes later, same day) answers
    `settled`; the day quota's used goes [1, 120, 2000] -> [2, 240, 4000]
    and the ledger counts 2 requests. Expected: `duplicate`, counted once.
    Fix: keep the tombstone of an unreserved charge as long as the charge
    may be retried (a day), or bound the charge's retries by TOMBSTONE_MS."""
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
