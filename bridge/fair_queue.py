"""Round-robin queueing across clients: each client's requests in order, clients taking turns (no I/O)."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Requests grouped by client key; `pop` serves the next client in turn, so none starves."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()  # clients in turn order

    def push(self, key: Hashable, item: T) -> None:
        self._lanes.setdefault(key, deque()).append(item)

    def pop(self) -> T | None:
        """The oldest request of the client whose turn it is (that client goes to the back); None if empty."""
        if not self._lanes:
            return None
        key, lane = next(iter(self._lanes.items()))
        item = lane.popleft()
        del self._lanes[key]
        if lane:
            self._lanes[key] = lane  # back of the line
        return item

    def remove(self, key: Hashable, item: T) -> bool:
        """Take a still-queued request out (its client cancelled it); False if it was not queued."""
        lane = self._lanes.get(key)
        if lane is None or item not in lane:
            return False
        lane.remove(item)
        if not lane:
            del self._lanes[key]
        return True

    def drain(self) -> list[T]:
        """Every queued request, in turn order; the queue is left empty."""
        items = []
        while (item := self.pop()) is not None:
            items.append(item)
        return items

    def count(self, key: Hashable) -> int:
        lane = self._lanes.get(key)
        return len(lane) if lane else 0

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())
