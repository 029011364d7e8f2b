"""A deterministic event-time merge of several ordered sources (the partitions of a topic range).

``tripwire replay --topic`` hands one engine the records of every partition, and the order in
which a consumer happens to fetch them is not reproducible. :class:`Merge` turns that into one
order that is: records are released by ``(event time, source rank, offset)``, and a record is
released only when every source either has a record buffered (so nothing earlier can still come
from it) or has reached the end of its range (``idle``). Whatever the fetch timing, the same
source contents give the same merged order, and each source's own order is always kept (a source
that is not in event-time order is not re-sorted). The worker needs none of this: an engine per
partition reads that partition in offset order.

>>> merge = Merge(["p0", "p1"])
>>> merge.add("p0", 10.0, 0, "a"); merge.add("p0", 12.0, 1, "b")
>>> [item for _s, _o, item in merge.pop_ready()]      # p1 may still bring something earlier
[]
>>> merge.add("p1", 11.0, 0, "c")
>>> [item for _s, _o, item in merge.pop_ready()]
['a', 'c']
>>> [item for _s, _o, item in merge.pop_ready(idle={"p1"})]   # p1 reached the end of its range
['b']
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Collection, Generic, Hashable, Iterator, Sequence, TypeVar

Source = TypeVar("Source", bound=Hashable)  # what names a source: a partition, a file


class Merge(Generic[Source]):
    """Buffers per source; releases in ``(key, rank, offset)`` order while it is safe to."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self._rank = {source: rank for rank, source in enumerate(self.sources)}
        self._buffers: dict[Source, deque[tuple[float, int, Any]]] = {s: deque() for s in self.sources}
        self._heads: list[tuple[float, int, int, Source]] = []  # (key, rank, offset, source) of non-empty buffers
        self._empty: set[Source] = set(self.sources)
        self.buffered = 0

    def add(self, source: Source, key: float, offset: int, item: Any) -> None:
        buffer = self._buffers[source]
        if not buffer:
            heapq.heappush(self._heads, (key, self._rank[source], offset, source))
            self._empty.discard(source)
        buffer.append((key, offset, item))
        self.buffered += 1

    def pending(self, source: Source) -> int:
        return len(self._buffers[source])

    def blocking(self, idle: Collection[Source] = ()) -> list[Source]:
        """The sources that hold the merge back: empty, and not known to be idle."""
        return [s for s in self._empty if s not in idle] if self.buffered else []

    def pop_ready(self, idle: Collection[Source] = (),
                  max_buffered: int | None = None) -> Iterator[tuple[Source, int, Any]]:
        """Yield ``(source, offset, item)`` for every record that can be released now.

        ``idle``: sources known to have nothing more for now, so they do not hold the others back.
        ``max_buffered``: past this many buffered records the oldest is released even if a source
        blocks (bounded memory; the order is then no longer guaranteed to be reproducible).
        """
        heads = self._heads
        while heads:
            if self._empty and any(s not in idle for s in self._empty):
                if max_buffered is None or self.buffered <= max_buffered:
                    return
            _key, rank, _offset, source = heapq.heappop(heads)
            buffer = self._buffers[source]
            _k, offset, item = buffer.popleft()
            self.buffered -= 1
            if buffer:
                key, next_offset, _item = buffer[0]
                heapq.heappush(heads, (key, rank, next_offset, source))
            else:
                self._empty.add(source)
            yield source, offset, item

    def drain(self) -> Iterator[tuple[Source, int, Any]]:
        """Everything buffered, in merge order, as if every source were idle (end of a finite range)."""
        return self.pop_ready(idle=self.sources)
