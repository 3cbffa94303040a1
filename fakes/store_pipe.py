"""The mail store's writer process as the edge sees it (``fakes.store_writer`` is the process).

``WriterProcess.send`` hands a batch over from the edge's event loop, which drives the pipes
itself: written as the pipe takes them (a 35 MB message never blocks the loop), the answer read
when it comes. No thread of the edge's stands between a message and its batch: a thread that fed
the writer cost the loop a hand-over of the interpreter at each message and at each answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fakes.exo.errors import InternalError
from fakes.store_writer import answer_in, batch_frame, written

_READ = 65536  # octets of an answer read at a time
log = logging.getLogger(__name__)


class StoreWriteFailed(RuntimeError):
    """The writer process rolled a batch back (its error, as it said it)."""


class StoreWriterGone(OSError):
    """The writer process ended before it answered."""


Answered = Callable[[BaseException | None], None]


class WriterProcess:
    """The writer as the edge sees it: started when first wanted (and again after it died between
    two batches), sent one batch at a time. ``send`` is driven by the running event loop without
    ever blocking it (a 35 MB message goes out as the pipe takes it); ``commit`` and ``finish``
    block, for callers without a loop and for the store's close."""

    def __init__(self, database: Path, *, durable: bool) -> None:
        self.database = database
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._unsent: list[memoryview] = []  # the batch in flight: what the pipe has not taken yet
        self._heard = bytearray()  # its answer, as far as it has come
        self._answered: Answered | None = None  # told once the batch in flight is answered
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that drives it
        self._writing = False  # the loop waits for the pipe to take more

    def start(self) -> subprocess.Popen[bytes]:
        """The running writer; a new one if none runs (its pipes non-blocking)."""
        if self.process is not None and self.process.poll() is not None:
            log.warning("mail store: the writer process ended (exit status %s); a new one takes over",
                        self.process.returncode)
            self.end()
        if self.process is None:
            package_root = str(Path(__file__).resolve().parents[1])
            path = os.environ.get("PYTHONPATH")
            env = os.environ | {"PYTHONPATH": package_root + (os.pathsep + path if path else "")}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fakes.store_writer", str(self.database), "FULL" if self.durable else "NORMAL"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
            for pipe in self._pipes(self.process):
                os.set_blocking(pipe, False)
            # a batch wakes it while the edge is busiest: as a batch job it does not take the CPU
            # from the edge's loop at once (the loop's writev of a batch took up to 0.7 ms when it
            # did, p90 0.2 to 0.4 ms under the app load); it runs as soon as a CPU is free
            if hasattr(os, "sched_setscheduler"):  # Linux
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(self.process.pid, os.SCHED_BATCH, os.sched_param(0))
        return self.process

    def send(self, rows: Sequence[Sequence[object]], contents: Sequence[tuple[str, bytes]],
             answered: Answered) -> None:
        """From the running loop: the batch goes out, and ``answered`` is called in the loop with
        None once it is durable, or with why it is not (``StoreWriteFailed``: rolled back;
        ``StoreWriterGone``: the writer died with it, the next batch starts another)."""
        if self._answered is not None:
            raise InternalError("expected no batch in flight")
        stdin, stdout = self._pipes(self.start())
        unsent = batch_frame(rows, contents)
        loop = asyncio.get_running_loop()
        loop.add_reader(stdout, self._on_readable)  # nothing is in flight until it is watched
        self._unsent, self._answered, self._loop = unsent, answered, loop
        self._heard.clear()
        self._on_writable()

    def _on_writable(self) -> None:
        stdin = self._pipes(self.process)[0]
        try:
            while self._unsent:
                self._unsent = written(stdin, self._unsent)
        except BlockingIOError:
            pass
        except OSError as exc:
            self._gone(exc)
            return
        if self._loop is not None and bool(self._unsent) != self._writing:
            self._writing = bool(self._unsent)
            (self._loop.add_writer(stdin, self._on_writable) if self._writing else self._loop.remove_writer(stdin))

    def _on_readable(self) -> None:
        try:
            data = os.read(self._pipes(self.process)[1], _READ)
        except BlockingIOError:
            return
        except OSError as exc:
            self._gone(exc)
            return
        if not data:
            self._gone(None)
            return
        self._heard += data
        answer = answer_in(self._heard)
        if answer is not None:
            self._done(StoreWriteFailed(answer.decode()) if answer else None)

    def _gone(self, why: OSError | None) -> None:
        """The writer died with the batch in flight: its senders hear why; the next batch starts another."""
        self._detach()
        code = self.end(kill=True)
        gone = StoreWriterGone(f"the store's writer process ended (exit status {code})")
        gone.__cause__ = why
        self._done(gone)

    def _done(self, outcome: BaseException | None) -> None:
        self._detach()
        answered, self._answered = self._answered, None
        self._unsent = []
        if answered is not None:
            answered(outcome)

    def _detach(self) -> None:
        """The loop no longer watches the pipes (from the loop's thread, or once it has stopped)."""
        loop, self._loop = self._loop, None
        writing, self._writing = self._writing, False
        if loop is None or loop.is_closed() or self.process is None:
            return
        stdin, stdout = self._pipes(self.process)
        loop.remove_reader(stdout)
        if writing:
            loop.remove_writer(stdin)

    def finish(self) -> None:
        """Block until the batch in flight is answered (its ``answered`` called here): for the
        store's close, from the loop's thread or after its loop has stopped."""
        if self._answered is None or self.process is None:
            return
        self._detach()
        stdin, stdout = self._pipes(self.process)
        try:
            while self._unsent:
                _wait(stdin, select.POLLOUT)
                self._on_writable()
            while self._answered is not None:
                _wait(stdout, select.POLLIN)
                self._on_readable()
        except OSError as exc:  # the pipes failed under it: told as the writer gone
            if self._answered is not None:
                self._gone(exc)

    def commit(self, rows: Sequence[Sequence[object]], contents: Sequence[tuple[str, bytes]]) -> None:
        """One batch, blocking until it is durable (``StoreWriteFailed``, ``StoreWriterGone`` if not)."""
        self.finish()
        self.start()
        outcome: list[BaseException | None] = []
        self._answered = outcome.append
        self._unsent, self._heard = batch_frame(rows, contents), bytearray()
        self.finish()
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def end(self, *, kill: bool = False) -> int | None:
        """Close the writer's pipes (it ends when its input does) and reap it; its exit status."""
        writer, self.process = self.process, None
        if writer is None:
            return None
        if kill:
            writer.kill()
        for pipe in (writer.stdin, writer.stdout):
            if pipe is not None:
                pipe.close()
        try:
            return writer.wait(30)
        except subprocess.TimeoutExpired:
            writer.kill()
            return writer.wait()

    @staticmethod
    def _pipes(process: subprocess.Popen[bytes] | None) -> tuple[int, int]:
        if process is None or process.stdin is None or process.stdout is None:
            raise InternalError("expected the writer's pipes")
        return process.stdin.fileno(), process.stdout.fileno()


def _wait(fd: int, event: int) -> None:
    """Block until ``fd`` is ready for ``event`` (or closed at the other end)."""
    poller = select.poll()
    poller.register(fd, event)
    poller.poll()
