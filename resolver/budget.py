"""How much upstream work an anonymous client may cause: token buckets per client.

Pure bookkeeping: the caller passes the time, nothing here awaits or reads a clock
it was not given. A bucket refills at ``rate`` tokens a second up to ``burst``; the
table of clients is bounded, the least recently seen forgotten first (a forgotten
client starts with a full bucket, which is the cost of the bound).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_CLIENTS = 65_536


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    rate: float  # tokens a second
    burst: float  # the most a client may spend at once
    max_clients: int = DEFAULT_MAX_CLIENTS


# Upstream lookups a client's batch requests may start: a cold 1,000-identifier batch
# is no longer 1,000 lookups of the next node on one anonymous request.
UPSTREAM_BUDGET = BudgetConfig(rate=200.0, burst=1_000.0)
# ?auth=true lookups (they skip every cache) a client may start
AUTH_BUDGET = BudgetConfig(rate=1.0, burst=10.0)
# upstream lookups one POST /api/resolve may start, whatever the client's budget
MAX_UPSTREAM_PER_BATCH = 100


class Budgets:
    """One token bucket per client (its address), bounded in number."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, client: str, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens of ``client``'s bucket if it holds them."""
        tokens, at = self._buckets.pop(client, (self.config.burst, now))
        tokens = min(self.config.burst, tokens + max(0.0, now - at) * self.config.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[client] = (tokens, now)  # now the most recently seen
        while len(self._buckets) > self.config.max_clients:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
