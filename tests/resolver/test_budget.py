"""Per-client token buckets: a table of spends at given times, no clock, no sockets."""

from __future__ import annotations

import pytest

from resolver.budget import BudgetConfig, Budgets


@pytest.mark.parametrize(
    ("spends", "expected"),
    [
        pytest.param([0.0] * 3, [True, True, True], id="the-burst"),
        pytest.param([0.0] * 4, [True, True, True, False], id="past-the-burst"),
        pytest.param([0.0, 0.0, 0.0, 0.0, 1.0], [True, True, True, False, True], id="refilled"),
        pytest.param([0.0] * 3 + [10.0] * 4, [True] * 6 + [False], id="refill-capped-at-burst"),
        pytest.param([5.0, 4.0, 4.0, 4.0], [True, True, True, False], id="clock-backwards"),
    ],
)
def test_a_client_spends_its_burst_then_its_rate(spends: list[float], expected: list[bool]) -> None:
    budgets = Budgets(BudgetConfig(rate=1.0, burst=3.0))
    assert [budgets.take("10.0.0.1", now) for now in spends] == expected


def test_clients_have_their_own_buckets() -> None:
    budgets = Budgets(BudgetConfig(rate=0.0, burst=1.0))
    assert budgets.take("a", 0.0)
    assert not budgets.take("a", 0.0)
    assert budgets.take("b", 0.0)


def test_the_table_of_clients_is_bounded_least_recently_seen_first() -> None:
    budgets = Budgets(BudgetConfig(rate=0.0, burst=1.0, max_clients=2))
    assert budgets.take("a", 0.0)
    assert budgets.take("b", 0.0)
    assert not budgets.take("a", 1.0)  # a is now the most recently seen
    assert budgets.take("c", 2.0)  # b is forgotten
    assert len(budgets) == 2
    assert not budgets.take("a", 3.0)  # a is remembered, and still spent
    assert budgets.take("b", 4.0)  # b starts afresh: the cost of the bound
