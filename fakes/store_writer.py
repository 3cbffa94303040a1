"""The mail store's writer: a process of its own that puts each batch of accepted messages into the
store's SQLite database in one transaction, and says when it is on disk.

``fakes.store.MailStore`` starts it (``python -m fakes.store_writer DB SYNCHRONOUS``) when the
first message is to be stored, and sends it batches over its standard input; it answers each on
its standard output once the transaction has committed (``SYNCHRONOUS=FULL``: fsynced), or with
why it could not. It lives as long as that pipe: when the edge closes it, or dies, the writer ends
after the batch it has whole (a batch cut short is never written). In the edge's own process the
writing cost the answers more than it took: each step of an SQLite statement hands the
interpreter's lock away and must win it back from the busy event loop, and a batch of a few
messages took milliseconds where it needs a fraction of one, while every sender waited for its 250.

A frame is four octets of length (big-endian) and a MessagePack body: a batch is
``[rows, contents]`` (the ``messages`` and ``contents`` tables' rows), an answer is ``""`` once the
batch is durable or the error that rolled it back. The writer holds ``writer.lock`` beside the
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
from pathlib import Path
from typing import IO

import msgspec

_LENGTH = struct.Struct(">I")
LOCK_NAME = "writer.lock"


def write_frame(fd: int, body: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> bytes | None:
    """One frame's body; None at the end of input (a frame cut short is no frame)."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(head)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = os.readv(fd, [view[got:]])
        if count == 0:
            return None
        got += count
    return bytes(buffer)


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
    decode = msgspec.msgpack.Decoder(tuple[list[tuple[str, bytes]], list[list[str | float | int | None]]]).decode
    try:
        while (frame := read_frame(0)) is not None:
            try:
                contents, rows = decode(frame)
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
