"""The one thread that runs every model of ``labformer serve``, answers first and streams with what is left.

A class of thirty shares two cores: a prediction or a translation is short and someone is waiting for it,
while a stream asks for the next character as soon as it has the last one and would take every cycle it
is given. So every model call goes through one :class:`ModelThread` with two priorities:

- ``ANSWER`` (digit predictions, a text's attention, translations) run first, in arrival order;
- ``STREAM`` (one character of a generated text) run when no answer waits, in arrival order — each stream
  asks for its next character only once it has the last one, so the streams take turns.

A waiting prediction therefore waits for at most one character step (about 1 ms) and the predictions ahead
of it, never behind a whole stream. One thread also means one forward pass at a time: the attention
recorded by a pass's hooks is that pass's alone. PyTorch is told to use one thread per operation
(:func:`serving_threads`): the operations of these small models are too short to share between cores,
and the other core is left to the web server's own work.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

__all__ = ["ANSWER", "STREAM", "ModelThread", "serving_threads"]

ANSWER, STREAM = 0, 1
T = TypeVar("T")


def serving_threads() -> None:
    """One PyTorch thread per operation, for a server whose requests each run a small model."""
    torch.set_num_threads(1)


class ModelThread:
    """A daemon thread running submitted calls, lower ``priority`` first, then first come first served."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="labformer-models", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            _, _, call, future = self._queue.get()
            if call is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as error:  # noqa: BLE001 - handed to the waiting request
                future.set_exception(error)

    def submit(self, priority: int, call: Callable[..., T], *args: Any) -> Future[T]:
        """Queues ``call(*args)``; its result or exception arrives in the returned future."""
        future: Future[T] = Future()
        self._queue.put((priority, next(self._order), lambda: call(*args), future))
        return future

    async def run(self, priority: int, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the model thread, awaited from the event loop."""
        return await asyncio.wrap_future(self.submit(priority, call, *args))

    def stop(self) -> None:
        """Ends the thread once the calls already queued at a higher priority have run."""
        self._queue.put((STREAM + 1, next(self._order), None, None))
