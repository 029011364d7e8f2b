"""A model's event clock: which records are on time, late, or from a far future.

The clock is the model's event-time high-water mark: the latest event time of a record it
accepted. A record is accepted when its time is at most ``allowed_lateness`` behind the clock
and at most ``max_future`` ahead of it; an accepted record joins the open window, whatever its
place in it. Otherwise it is refused with a reason (the engine dead-letters it):

- ``late``: more than ``allowed_lateness`` behind the clock;
- ``far future``: more than ``max_future`` ahead of the clock;
- a time outside the years 1-9999 in UTC (it could not be written in an alert) is always refused.

One stray record never moves the clock far, so it can neither expire the label join's pending
predictions nor make every later record late. A stream that really moved (traffic resumes after a
gap longer than ``max_future``, or a model's first record was wrong) shows it with a second record
in a row on the same far side (ahead by more than ``max_future``, or behind by more than both
limits): the clock moves to that second record, which is accepted; only the first is refused.

>>> clock = EventClock(allowed_lateness=60, max_future=3600)
>>> [clock.refusal(ts, "m") is None for ts in (1000.0, 1030.0, 1010.0)]
[True, True, True]
>>> clock.refusal(900.0, "m")
"late: ts 1970-01-01T00:15:00.000Z is 130 s behind the event time of model 'm' (1970-01-01T00:17:10.000Z; allowed_lateness_seconds = 60)"
>>> clock.refusal(1e9, "m")[:10], clock.now
('far future', 1030.0)
>>> clock.refusal(1e9 + 1, "m") is None, clock.now  # a second record out there: the stream moved on
(True, 1000000001.0)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tripwire.events import format_ts

# The range format_ts can write (with room for its rounding to milliseconds).
EARLIEST_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


class EventClock:
    """One model's event-time high-water mark and the admission rule above; counts what it refuses."""

    __slots__ = ("allowed_lateness", "max_future", "now", "late", "far_future", "jumps", "_far_side")

    def __init__(self, allowed_lateness: float, max_future: float) -> None:
        self.allowed_lateness = allowed_lateness
        self.max_future = max_future
        self.now: float | None = None  # no record yet: the first one sets it
        self.late = 0
        self.far_future = 0  # (counts include the times outside the years 1-9999, by their side)
        self.jumps = 0  # times a second far record in a row moved the clock
        self._far_side = 0  # +1 / -1: the previous record was refused far ahead / far behind; 0: it was not

    def refusal(self, ts: float, model: str) -> str | None:
        """None when a record of ``model`` at ``ts`` is accepted (the clock advances to it), else why not."""
        now = self.now
        if now is not None and now - self.allowed_lateness <= ts <= now + self.max_future:
            self._far_side = 0
            if ts > now:
                self.now = ts
            return None
        if not EARLIEST_TS <= ts <= LATEST_TS:
            if ts > LATEST_TS:
                self.far_future += 1
            else:
                self.late += 1
            return (f"field 'ts' is outside the years 1-9999 in UTC ({ts:.0f} s from 1970); "
                    f"an event time must be one an alert can carry")
        if now is None:
            self.now = ts
            return None
        side = 1 if ts > now else (-1 if now - ts > self.max_future else 0)
        if side and side == self._far_side:
            self._far_side = 0
            self.jumps += 1
            self.now = ts
            return None
        self._far_side = side
        if ts > now:
            self.far_future += 1
            return (f"far future: ts {format_ts(ts)} is {ts - now:.0f} s ahead of the event time of model {model!r} "
                    f"({format_ts(now)}; max_future_seconds = {self.max_future:g})")
        self.late += 1
        return (f"late: ts {format_ts(ts)} is {now - ts:.0f} s behind the event time of model {model!r} "
                f"({format_ts(now)}; allowed_lateness_seconds = {self.allowed_lateness:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now, "counts": [self.late, self.far_future, self.jumps],
                "far_side": self._far_side}

    def restore(self, state: dict[str, Any]) -> None:
        self.now = state["now"]
        self.late, self.far_future, self.jumps = state["counts"]
        self._far_side = state["far_side"]
