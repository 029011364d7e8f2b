"""The delivery runner the alert sinks and the MLflow reporter share: batching, inline sends, backoff."""

from __future__ import annotations

import time

from tripwire.sinks.delivery import DeliveryRunner


class Receiver:
    """A receiver that takes batches, or refuses them while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.down = False

    def __call__(self, batch: list[int]) -> None:
        if self.down:
            raise ConnectionError("receiver down " + "x" * 400)
        self.batches.append(list(batch))


def test_inline_runner_waits_for_min_batch_then_backs_off_and_keeps_the_batch():
    now = [0.0]
    receiver = Receiver()
    runner = DeliveryRunner("test", receiver, batch_size=100, min_batch=3, background=False, retry_seconds=1.0,
                            clock=lambda: now[0], item="window")
    runner.submit(1)
    runner.submit(2)
    assert receiver.batches == [] and runner.pending == 2  # below min_batch: nothing sent yet
    runner.submit(3)
    assert receiver.batches == [[1, 2, 3]] and runner.pending == 0 and runner.delivered == 3
    assert not runner.running  # inline: no thread of its own

    receiver.down = True
    for item in (4, 5, 6):
        runner.submit(item)
    assert runner.failures == 1 and runner.pending == 3
    assert len(runner.last_error) < 260 and runner.last_error.startswith("ConnectionError: receiver down")
    receiver.down = False
    runner.submit(7)  # due, but the backoff (1 s on the runner's clock) is not over: no attempt
    assert runner.failures == 1 and receiver.batches == [[1, 2, 3]]
    now[0] = 1.0
    runner.submit(8)
    assert receiver.batches == [[1, 2, 3], [4, 5, 6, 7, 8]]  # the failed batch again, first, with what came since

    runner.submit(9)  # below min_batch: only a flush sends it
    assert runner.close(timeout=5.0) is True and receiver.batches[-1] == [9]


def test_background_runner_sends_on_its_thread_once_min_batch_is_buffered():
    receiver = Receiver()
    runner = DeliveryRunner("test", receiver, batch_size=100, min_batch=2, retry_seconds=0.01)
    runner.submit(1)
    runner.submit(2)
    deadline = time.monotonic() + 30
    while runner.delivered < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert receiver.batches == [[1, 2]]  # one batch: the first item alone was below min_batch
    runner.submit(3)
    assert runner.close(timeout=10.0) is True and sum(receiver.batches, []) == [1, 2, 3]
    assert not runner.running
