"""The mail store's writer: a process of its own that puts each batch of accepted messages into the
store's SQLite database in one transaction, and says when it is on disk; and ``WriterProcess``,
the edge's side of it.

``fakes.store.MailStore`` starts it (``python -m fakes.store_writer DB SYNCHRONOUS``) when the
first connection comes, and sends it batches over its standard input; it answers each on its
standard output once the transaction has committed (``SYNCHRONOUS=FULL``: fsynced), or with why
it could not. It lives as long as that pipe: when the edge closes it, or dies, the writer ends
after the batch it has whole (a batch cut short is never written). In the edge's own process the
writing cost the answers more than it took: each step of an SQLite statement hands the
interpreter's lock away and must win it back from the busy event loop, and a batch of a few
messages took milliseconds where it needs a fraction of one, while every sender waited for its 250.
The edge's event loop drives the pipes itself (``WriterProcess.send``: written as the pipe takes
them, the answer read when it comes), so no thread of the edge's stands between a message and
its batch: a thread that fed the writer cost the loop a hand-over of the interpreter at each
message and each answer.

A frame is four octets of length (big-endian) and a MessagePack body. A batch is a frame of
``[rows, [[name, size], ...]]`` (the ``messages`` table's rows, and the ``contents`` table's names
with the size of each content) followed by the contents' octets as they are (a 35 MB message is
not copied into a frame, nor out of one); an answer is a frame of ``""`` once the batch is
durable, or of the error that rolled it back. The writer holds ``writer.lock`` beside the
database while it writes a batch: a store opened while the writer of a killed edge still
finishes its last batch waits for it (``wait_for_writer``) before it repairs the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import msgspec

from fakes.exo.errors import InternalError

_LENGTH = struct.Struct(">I")
LOCK_NAME = "writer.lock"


_IOV_MAX = 1024  # buffers one writev takes at most (Linux)
_READ = 65536  # octets of an answer read at a time
log = logging.getLogger(__name__)
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE_BATCH = msgspec.msgpack.Decoder(tuple[list[list[str | float | int | None]], list[tuple[str, int]]]).decode
Row = list[str | float | int | None]


class StoreWriteFailed(RuntimeError):
    """The writer process rolled a batch back (its error, as it said it)."""


class StoreWriterGone(OSError):
    """The writer process ended before it answered."""


def write_frame(fd: int, body: bytes, *after: bytes) -> None:
    """A frame (its length, then ``body``), then the octets ``after`` it, in as few system calls
    as the pipe allows and without joining them (``fd`` blocking)."""
    views = _frame(body, *after)
    while views:
        views = _written(fd, views)


def _frame(body: bytes, *after: bytes) -> list[memoryview]:
    return [memoryview(_LENGTH.pack(len(body))), memoryview(body), *(memoryview(part) for part in after if part)]


def _batch(rows: Sequence[Sequence[object]], contents: Sequence[tuple[str, bytes]]) -> list[memoryview]:
    """A batch as it goes to the writer: its rows, then each content's octets."""
    return _frame(_ENCODE((rows, [(name, len(body)) for name, body in contents])), *(body for _, body in contents))


def _written(fd: int, views: list[memoryview]) -> list[memoryview]:
    """One ``writev`` of ``views``; what is left of them."""
    sent = os.writev(fd, views[:_IOV_MAX])
    at = 0
    while at < len(views) and sent >= len(views[at]):
        sent -= len(views[at])
        at += 1
    rest = views[at:]
    if sent:
        rest[0] = rest[0][sent:]
    return rest


def _answer_in(heard: bytearray) -> bytes | None:
    """The answer's body once ``heard`` holds its whole frame."""
    if len(heard) < _LENGTH.size:
        return None
    end = _LENGTH.size + _LENGTH.unpack_from(heard)[0]
    return bytes(heard[_LENGTH.size:end]) if len(heard) >= end else None


def receive_batch(fd: int) -> tuple[list[Row], list[tuple[str, memoryview]]] | None:
    """A batch, its contents as views of one buffer; None at the end of input."""
    head = read_frame(fd)
    if head is None:
        return None
    rows, sizes = _DECODE_BATCH(head)
    octets = _read_exactly(fd, sum(size for _, size in sizes))
    if octets is None:
        return None
    view, at, contents = memoryview(octets), 0, []
    for name, size in sizes:
        contents.append((name, view[at:at + size]))
        at += size
    return rows, contents


def read_frame(fd: int) -> bytearray | None:
    """One frame's body; None at the end of input (a frame cut short is no frame)."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(head)[0])


def _read_exactly(fd: int, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = os.readv(fd, [view[got:]])
        if count == 0:
            return None
        got += count
    return buffer


def wait_for_writer(directory: Path) -> IO[str]:
    """Block until no writer is writing a batch into the store in ``directory``; the lock file,
    held (closing it lets go)."""
    handle = open(directory / LOCK_NAME, "a")  # noqa: SIM115 - held by the caller for as long as it needs
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


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

    @property
    def busy(self) -> bool:
        """A batch is in flight."""
        return self._answered is not None

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
        return self.process

    def send(self, rows: Sequence[Sequence[object]], contents: Sequence[tuple[str, bytes]],
             answered: Answered) -> None:
        """From the running loop: the batch goes out, and ``answered`` is called in the loop with
        None once it is durable, or with why it is not (``StoreWriteFailed``: rolled back;
        ``StoreWriterGone``: the writer died with it, the next batch starts another)."""
        if self._answered is not None:
            raise InternalError("expected no batch in flight")
        stdin, stdout = self._pipes(self.start())
        self._unsent, self._answered = _batch(rows, contents), answered
        self._heard.clear()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(stdout, self._on_readable)
        self._on_writable()

    def _on_writable(self) -> None:
        stdin = self._pipes(self.process)[0]
        try:
            while self._unsent:
                self._unsent = _written(stdin, self._unsent)
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
        answer = _answer_in(self._heard)
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
        if loop is None or loop.is_closed() or self.process is None:
            return
        stdin, stdout = self._pipes(self.process)
        loop.remove_reader(stdout)
        if self._writing:
            loop.remove_writer(stdin)
        self._writing = False

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
        self._unsent, self._heard = _batch(rows, contents), bytearray()
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


def main() -> int:
    database, synchronous = sys.argv[1], sys.argv[2]
    # the edge ends it by closing the pipe, after its last batch: a Ctrl-C or SIGTERM meant for the
    # edge (its process group's) must not cut that batch off
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a batch wakes it while the edge is busiest: as a batch job it does not take the CPU from the
    # edge's loop at once (the loop's writev of the batch took up to 0.7 ms when it did, p90 0.2 to
    # 0.4 ms under the app load); it runs as soon as a CPU is free, and larger batches wait for it
    if hasattr(os, "sched_setscheduler"):  # Linux
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    lock = open(Path(database).with_name(LOCK_NAME), "a")  # noqa: SIM115 - the writer's for its life
    db = sqlite3.connect(database, isolation_level=None, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    try:
        while (batch := receive_batch(0)) is not None:
            rows, contents = batch
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        db.executemany("INSERT INTO contents VALUES (?,?)", contents)
                        db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                        db.execute("COMMIT")
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                answer = ""
            except Exception as exc:  # the batch is not stored: its senders hear 451, the writer goes on
                answer = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            write_frame(1, answer.encode())
    except BrokenPipeError:  # the edge is gone
        pass
    finally:
        db.close()
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
