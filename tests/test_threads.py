"""gitxp.threads.Worker: jobs in order on a second thread, or inline behind the same interface."""

from __future__ import annotations

import threading

import pytest

from gitxp.threads import Worker


@pytest.mark.parametrize("inline", [False, True])
def test_results_come_back_in_order_and_errors_at_their_result(inline: bool) -> None:
    ran_on: list[str] = []

    def job(n: int) -> int:
        ran_on.append(threading.current_thread().name)
        if n == 3:
            raise ValueError("three")
        return n * n

    with Worker(job, "gitxp-test", depth=2, inline=inline) as w:
        got = []
        for n in range(6):
            w.start(n)
            if n % 2:  # collect as the artifact writer does: a few jobs behind
                got.append(w.result())
        assert got == [0, 1, 4]
        with pytest.raises(ValueError, match="three"):
            w.result()
        assert [w.result(), w.result()] == [16, 25]
    expected = threading.current_thread().name if inline else "gitxp-test"
    assert set(ran_on) == {expected}


@pytest.mark.parametrize("inline", [False, True])
def test_through_waits_for_a_job_and_everything_before_it(inline: bool) -> None:
    """``through(k)`` returns once jobs 0..k are done (the artifact writer frees a buffer with it); None: all of them."""
    done: list[int] = []
    gate = threading.Event()

    def job(n: int) -> None:
        if n == 2 and not inline:
            gate.wait(5)  # job 2 finishes only once the caller lets it
        done.append(n)

    with Worker(job, "gitxp-test", depth=8, inline=inline) as w:
        for n in range(5):
            w.start(n)
        w.through(1)
        assert done[:2] == [0, 1]
        gate.set()
        w.through(3)
        assert done[:4] == [0, 1, 2, 3]
        w.through(2)  # already collected: returns at once
        w.through(None)
        assert done == [0, 1, 2, 3, 4]
