"""The mail store's writer: a process of its own that puts each batch of accepted messages into the
store's SQLite database in one transaction, and says when it is on disk (the edge's side of it:
``fakes.store_pipe``; this module imports only what the process needs, for a small process).

``fakes.store.MailStore`` starts it (``python -m fakes.store_writer DB SYNCHRONOUS``) when the
first connection comes, and sends it batches over its standard input; it answers each on its
standard output once the transaction has committed (``SYNCHRONOUS=FULL``: fsynced), or with why
it could not. It lives as long as that pipe: when the edge closes it, or dies, the writer ends
after the batch it has whole (a batch cut short is never written). In the edge's own process the
writing cost the answers more than it took: each step of an SQLite statement hands the
interpreter's lock away and must win it back from the busy event loop, and a batch of a few
messages took milliseconds where it needs a fraction of one, while every sender waited for its 250.

A frame is four octets of length (big-endian) and a MessagePack body. A batch is a frame of
``[rows, [[name, size], ...]]`` (the ``messages`` table's rows, and the ``contents`` table's names
with the size of each content) followed by the contents' octets as they are (a 35 MB message is
not copied into a frame, nor out of one); an answer is a frame of ``""`` once the batch is
durable, or of the error that rolled it back. The writer holds ``writer.lock`` beside the
database while it writes a batch: a store opened while the writer of a killed edge still
finishes its last batch waits for it (``wait_for_writer``) before it repairs the files.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec

_LENGTH = struct.Struct(">I")
LOCK_NAME = "writer.lock"


_IOV_MAX = 1024  # buffers one writev takes at most (Linux)
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE_BATCH = msgspec.msgpack.Decoder(tuple[list[list[str | float | int | None]], list[tuple[str, int]]]).decode
Row = list[str | float | int | None]


def write_frame(fd: int, body: bytes, *after: bytes) -> None:
    """A frame (its length, then ``body``), then the octets ``after`` it, in as few system calls
    as the pipe allows and without joining them (``fd`` blocking)."""
    views = frame(body, *after)
    while views:
        views = written(fd, views)


def frame(body: bytes, *after: bytes) -> list[memoryview]:
    """A frame as views to write: its length, ``body``, then the octets ``after`` it."""
    return [memoryview(_LENGTH.pack(len(body))), memoryview(body), *(memoryview(part) for part in after if part)]


def batch_frame(rows: Sequence[Sequence[object]], contents: Sequence[tuple[str, bytes]]) -> list[memoryview]:
    """A batch as it goes to the writer: its rows, then each content's octets."""
    return frame(_ENCODE((rows, [(name, len(body)) for name, body in contents])), *(body for _, body in contents))


def written(fd: int, views: list[memoryview]) -> list[memoryview]:
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


def answer_in(heard: bytearray) -> bytes | None:
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


def main() -> int:
    database, synchronous = sys.argv[1], sys.argv[2]
    # the edge ends it by closing the pipe, after its last batch: a Ctrl-C or SIGTERM meant for the
    # edge (its process group's) must not cut that batch off
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
