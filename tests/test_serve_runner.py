"""The model thread of ``labformer serve``: answers before stream steps, first come first served within a
priority, errors handed to the caller, cancelled calls skipped."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labformer.serve.runner import ANSWER, STREAM, ModelThread


@pytest.fixture
def runner():
    thread = ModelThread()
    yield thread
    thread.stop()


def test_answers_run_before_the_stream_steps_queued_ahead_of_them(runner):
    gate, order = threading.Event(), []
    blocker = runner.submit(STREAM, gate.wait, 10)  # the thread is busy with a character step
    steps = [runner.submit(STREAM, order.append, f"step {i}") for i in range(3)]
    answers = [runner.submit(ANSWER, order.append, f"answer {i}") for i in range(2)]
    gate.set()
    for future in [blocker, *steps, *answers]:
        future.result(10)
    assert order == ["answer 0", "answer 1", "step 0", "step 1", "step 2"]


def test_an_error_reaches_the_caller_and_the_thread_goes_on(runner):
    with pytest.raises(ValueError, match="bad digit"):
        runner.submit(ANSWER, int, "bad digit").result(10)
    assert runner.submit(ANSWER, int, "7").result(10) == 7


def test_a_cancelled_call_is_skipped(runner):
    gate, ran = threading.Event(), []
    runner.submit(ANSWER, gate.wait, 10)
    cancelled = runner.submit(STREAM, ran.append, "left")  # its reader went away before its turn
    assert cancelled.cancel()
    gate.set()
    assert runner.submit(STREAM, ran.append, "kept").result(10) is None
    assert ran == ["kept"]


def test_awaited_from_an_event_loop(runner):
    async def both() -> list[int]:
        return list(await asyncio.gather(runner.run(ANSWER, sum, [1, 2]), runner.run(STREAM, len, "abc")))

    assert asyncio.run(both()) == [3, 3]
