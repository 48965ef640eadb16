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
