"""What the budget meters owe Redis while it does not answer: merged per meter, bounded."""

from __future__ import annotations

from provider_gateway.routing.meters import Meter
from provider_gateway.routing.owed import Owed

NOW = 1_800_000_000
DAY = Meter("{key:a}:key:a:tokens:d1", "window", 0, 1000, 600, NOW + 600)


def owed_amounts(owed: Owed) -> dict[str, int]:
    return {m.key: m.amount for group in owed.take(NOW) for m in group}


def test_an_outage_s_settlements_are_merged_into_one_amount_per_meter() -> None:
    """A reservation admitted during the outage and its refund net out to what was used; a
    thousand settlements of one meter are one entry."""
    owed = Owed()
    owed.add([DAY._replace(amount=2006)])
    owed.add([DAY._replace(amount=-1989)])
    for _ in range(1000):
        owed.add([DAY._replace(amount=-1)])
    assert len(owed) == 1
    assert owed_amounts(owed) == {DAY.key: 17 - 1000}
    assert len(owed) == 0  # taken: paid once


def test_owed_amounts_are_bounded_and_what_overflows_is_counted() -> None:
    owed = Owed(most=2)
    meters = [DAY._replace(key=f"{{key:k{i}}}:key:k{i}:tokens:d1", amount=5) for i in range(3)]
    assert owed.add(meters[:2])
    assert not owed.add(meters[2:])  # no slot left: lost to Redis
    assert owed.add([meters[0]])  # a meter already owed still merges
    assert (len(owed), owed.lost) == (2, 1)
    assert owed_amounts(owed) == {meters[0].key: 10, meters[1].key: 5}


def test_rates_nothing_and_windows_over_are_not_paid() -> None:
    """A rate is about now (its per-process twin carries the outage); a window that ended while
    Redis was away is gone; an amount that nets to nothing costs no call."""
    owed = Owed()
    owed.add([Meter("{key:a}:key:a:rpm", "rate", 1, 10, 60)])
    owed.add([DAY._replace(key="{key:a}:key:a:tokens:d0", amount=40, ends_at=NOW - 1)])
    owed.add([DAY._replace(amount=7), DAY._replace(key="{key:b}:key:b:tokens:d1", amount=3)])
    owed.add([DAY._replace(amount=-7)])
    assert owed_amounts(owed) == {"{key:b}:key:b:tokens:d1": 3}


def test_one_call_per_hash_tag() -> None:
    """A script's keys share one hash tag (Redis Cluster runs it on one node)."""
    owed = Owed()
    team = DAY._replace(key="{team:t}:team:t:tokens:d1", amount=1)
    owed.add([DAY._replace(amount=1), DAY._replace(key=DAY.key + ":x", amount=1), team])
    groups = sorted(sorted(m.key for m in group) for group in owed.take(NOW))
    assert groups == [[DAY.key, DAY.key + ":x"], [team.key]]
