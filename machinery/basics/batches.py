"""The background batch thread: train.py's updates prepared ahead while the current one runs.

`Prefetch(updates, ...)` runs the iterator of train.py's updates (each `(epoch, position, offset, Batch)`) in a
thread, up to `prefetch` updates ahead, in pinned memory on CUDA (the copies to the device overlap the compute).
It only moves work in time: the order never depends on timing, and with prefetch 0 the same iterator is called
in the loop. `delay` (--prepare-delay) slows each update on purpose, to measure what the thread hides.
"""
import contextlib
import queue
import threading
import time


def pinned(batch):
    """train.py's Batch with its micro-batches' tensors in pinned (page-locked) memory, from which the copies to
    a GPU run asynchronously."""
    return batch._replace(micro_batches=[(*[t if t is None else t.pin_memory() for t in mb[:3]], *mb[3:])
                                         for mb in batch.micro_batches])


class Prefetch:
    def __init__(self, updates, prefetch, pin, delay=0.0):
        self.updates, self.pin, self.delay = updates, pin, delay
        self.queue, self.stopping, self.thread = queue.Queue(maxsize=max(prefetch, 1)), threading.Event(), None
        if prefetch:  # prepare in the background; with --prefetch 0, in the loop when asked
            self.thread = threading.Thread(target=self._produce, daemon=True)
            self.thread.start()

    def _prepared(self):
        epoch, position, offset, batch = next(self.updates)
        batch = pinned(batch) if self.pin else batch
        time.sleep(self.delay)  # 0 unless benchmarking the overlap (bench.py overlap)
        return epoch, position, offset, batch

    def _produce(self):
        try:
            while not self.stopping.is_set():
                self._put(self._prepared())
        except BaseException as e:  # handed to the training loop, which raises it
            self._put(e)

    def _put(self, item):
        while not self.stopping.is_set():
            with contextlib.suppress(queue.Full):
                return self.queue.put(item, timeout=0.1)

    def next(self):
        """The next update: (epoch, position and offset after it, Batch)."""
        if self.thread is None:
            return self._prepared()
        while True:
            try:
                item = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the batch-preparing thread ended without a batch") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
