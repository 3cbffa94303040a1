"""Where accepted mail lands: mailboxes and folders on SQLite (WAL), an .eml file per content.

Folders: Inbox, Sent Items, Junk, and Outbound (mail leaving for the internet). ``stored``
hands one accepted message to the store from the edge's event loop, with what to call once it
is on disk for good; the edge says 250 only then. Every message that comes while a batch is
being written (many sessions' worth) goes into the next, and the writer process
(``fakes.store_writer``, its pipes driven by the same loop) puts each batch into one transaction
with one fsync (group commit): the copies' rows, and each distinct content as a blob, the one
durable copy the 250 waits for. The ``.eml``
files follow from the blobs in a thread of their own, when no message has come for ``QUIET``
seconds (and at most ``LAG`` seconds behind, at close, and whenever ``files_written`` asks): a file
written while the edge answers costs the answers more than the file (each of its system calls
takes the interpreter from the loop and gives it back). A copy read before its file is whole is
read from its blob. A store that was killed is repaired when it is opened:
an ``.eml`` whose transaction never committed is swept, one that did not reach the disk whole (or
at all) is written again from its blob. Nothing the edge answered 250 for is lost or stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fakes.exo.errors import InternalError
from fakes.exo.events import Acceptance
from fakes.store_pipe import StoreWriteFailed, StoreWriterGone, WriterProcess
from fakes.store_writer import wait_for_writer

__all__ = ["MailStore", "StoredMessage", "StoreWriteFailed", "StoreWriterGone"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id            TEXT NOT NULL,  -- unique by how it is made (a random prefix and a count); never looked up
    session       TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    mail_from     TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    mailbox       TEXT,
    folder        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    stored_at     REAL NOT NULL,
    deliver_after REAL NOT NULL,
    spf           TEXT,
    size          INTEGER NOT NULL,
    path          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_folder ON messages (mailbox, folder);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session);
CREATE TABLE IF NOT EXISTS contents (
    file    TEXT PRIMARY KEY,  -- the .eml's name
    content BLOB NOT NULL
);
"""
_BATCH = 512  # messages in one transaction at most
QUIET = 0.2  # seconds without a commit before the .eml files are written
LAG = 60.0  # seconds: the files are never further behind, however busy the edge
_EXPORT_ROWS = 256  # contents read back from the store at a time
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredMessage:
    id: str
    session: str
    endpoint: str
    message_id: str
    mail_from: str
    recipient: str
    mailbox: str | None
    folder: str
    kind: str  # "message" or "ndr"
    stored_at: float
    deliver_after: float
    spf: str | None
    size: int
    path: str
    store: MailStore | None = field(default=None, compare=False, repr=False)  # its blob, until the file is whole

    @property
    def delayed(self) -> bool:
        return self.deliver_after > self.stored_at

    def read(self) -> bytes:
        return self.head(None)

    def head(self, octets: int | None) -> bytes:
        """The first ``octets`` of the copy (its headers, for a summary; None: all of it), from its
        ``.eml`` once that is whole, else from its blob."""
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size == self.size:
                    return handle.read(octets)
        except FileNotFoundError:
            pass
        if self.store is None:
            raise FileNotFoundError(self.path)
        return self.store.content(Path(self.path).name, octets)


@dataclass(slots=True)
class _Job:
    acceptance: Acceptance
    session: str
    endpoint: str
    now: float
    then: Callable[[list[str] | BaseException], None] | None  # called in the loop (None: ``deliver``)


Outcome = tuple[_Job, "list[str] | BaseException"]  # a job's copies' ids, or why it was not stored


Row = tuple[str, str, str, str, str, str, str | None, str, str, float, float, str | None, int, str]


class MailStore:
    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.messages_dir = directory / "messages"
        self.messages_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)  # the mail of the tenant: its owner's only
        self.db_path = directory / "store.sqlite"
        with wait_for_writer(directory):  # a killed edge's writer finishes its last batch first
            pass
        self._lock = threading.Lock()  # this process's connection: the readers' queries, clear(), the repair
        # names of copies and files: random for this opening of the store, then counted (a
        # random draw per message would be a system call)
        self._unique = map(f"{uuid.uuid4().hex[:20]}{{:012x}}".format, itertools.count())
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit's WAL frames are fsynced before COMMIT returns (the 250 waits for it)
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.durable = durable
        self.writer = WriterProcess(self.db_path, durable=durable)  # commits the batches
        self._waiting: list[_Job] = []  # messages for the next batch (the loop's)
        self._sending = False  # a batch is in flight, or about to be sent
        self._closing = False
        self._db.executescript(SCHEMA)
        self.repaired = self._repair()
        # the .eml files, written from the committed blobs by a thread of their own: the commits
        # holding contents, counted, and those whose files are written (or were tried)
        self._export = threading.Condition()
        self._committed = self._exported = 0
        self._last_commit = self._first_unexported = 0.0
        self._urgent = 0  # callers of files_written waiting
        self._stopping = False
        self._export_lock = threading.Lock()  # held while files are written (clear waits for it)
        with self._lock:  # every file up to this content is on disk (the repair wrote the rest)
            self._exported_row: int = self._db.execute("SELECT coalesce(max(rowid), 0) FROM contents").fetchone()[0]
        self.exporter = threading.Thread(target=self._file_loop, name="mail-files", daemon=True)
        self.exporter.start()

    # -- writing ------------------------------------------------------------------------------

    def stored(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float,
               then: Callable[[list[str] | BaseException], None]) -> None:
        """From the running event loop: ``then`` is called in the loop with the copies' ids once
        they are on disk (or with why they are not). Every message that comes while a batch is
        being written goes into the next one (group commit); a batch's senders are told in the
        one call of the loop's that reads the writer's answer."""
        self._waiting.append(_Job(acceptance, session, endpoint, now, then))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().call_soon(self._send_next)  # the loop's other input joins it

    def expect_mail(self) -> None:
        """A message may come soon: the writer process is started now if it is not running, so
        that the first message does not wait for it (an idle edge has none). Cheap when it runs."""
        if self.writer.process is None:
            with contextlib.suppress(OSError):  # the first batch tries again, and says why
                self.writer.start()

    def deliver(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float) -> list[str]:
        """Store one message, blocking until it is on disk; its copies' ids. For callers without
        an event loop (tools, tests), never while a loop feeds the store."""
        rows, contents = self._prepare(_Job(acceptance, session, endpoint, now, None))
        self.writer.commit(rows, contents)
        self._note_commit(contents)
        return [row[0] for row in rows]

    def _send_next(self) -> None:
        """The messages waiting (up to ``_BATCH``), to the writer as one batch; in the loop, while
        no batch is in flight."""
        batch, self._waiting = self._waiting[:_BATCH], self._waiting[_BATCH:]
        if not batch or self._closing:
            self._sending = False
            return
        rows: list[Row] = []
        contents: list[tuple[str, bytes]] = []
        ready: list[Outcome] = []
        for job in batch:
            try:
                job_rows, job_contents = self._prepare(job)
            except Exception as exc:  # one message that cannot be stored fails alone
                self._tell([(job, exc)])
                continue
            rows += job_rows
            contents += job_contents
            ready.append((job, [row[0] for row in job_rows]))
        loop = asyncio.get_running_loop()

        def answered(outcome: BaseException | None) -> None:
            if outcome is None:
                self._note_commit(contents)
            self._tell(ready if outcome is None else [(job, outcome) for job, _ in ready])
            if self._waiting and not self._closing:
                loop.call_soon(self._send_next)  # what came meanwhile, and what comes in this turn
            else:
                self._sending = False

        if not ready:
            loop.call_soon(self._send_next)
            return
        try:
            self.writer.send(rows, contents, answered)
        except Exception as exc:  # no writer could be started: every sender hears 451
            answered(exc)

    def _tell(self, outcomes: list[Outcome]) -> None:
        """Each job's ``then``, whatever the others' do; none once the store closes (their loop
        has stopped)."""
        if self._closing:
            return
        for job, outcome in outcomes:
            if job.then is None:
                raise InternalError("expected a callback for a job of a loop's")
            try:
                job.then(outcome)
            except Exception:
                log.exception("mail store: a sender's callback failed")

    def _note_commit(self, contents: list[tuple[str, bytes]]) -> None:
        """A batch is durable: its contents' .eml files are due."""
        if contents:
            with self._export:
                now = time.monotonic()
                self._last_commit = now
                self._committed += 1
                if self._committed - self._exported == 1:  # the first the exporter has to wait for
                    self._first_unexported = now
                    self._export.notify_all()

    # -- the .eml files -----------------------------------------------------------------------------

    def _file_loop(self) -> None:
        reader = sqlite3.connect(self.db_path, isolation_level=None)  # reads beside the writer's commits
        try:
            while self._export_when_due(reader):
                pass
        finally:
            reader.close()

    def _export_when_due(self, reader: sqlite3.Connection) -> bool:
        """Wait until files are due, write them; False once the store closes and all are written."""
        with self._export:
            while True:
                now = time.monotonic()
                quiet_in = self._last_commit + QUIET - now
                late_in = self._first_unexported + LAG - now
                if self._committed == self._exported:
                    if self._stopping:
                        return False
                    self._export.wait()
                elif self._urgent or self._stopping or quiet_in <= 0 or late_in <= 0:
                    break
                else:
                    self._export.wait(min(quiet_in, late_in))
            target = self._committed
        why = self._write_files(reader)
        if why:  # the blobs hold them; the next open writes them again
            log.warning("mail store: .eml files not written (%s); they are read from the store, and "
                        "written again when it is next opened", why)
        with self._export:
            self._exported = target
            self._export.notify_all()
        return True

    def _write_files(self, reader: sqlite3.Connection) -> str:
        """Every content committed since the last file written, as its .eml file; why the first
        that could not be written was not ("" when all were)."""
        why = ""
        with self._export_lock:
            while True:
                try:
                    rows = reader.execute("SELECT rowid, file, content FROM contents WHERE rowid > ? ORDER BY "
                                          "rowid LIMIT ?", (self._exported_row, _EXPORT_ROWS)).fetchall()
                except sqlite3.Error as exc:
                    return why or str(exc)
                if not rows:
                    return why
                self._exported_row = rows[-1][0]
                for _, name, body in rows:
                    try:
                        self._write_file(name, body)
                    except OSError as exc:
                        why = why or str(exc.strerror or exc)

    def content(self, name: str, octets: int | None = None) -> bytes:
        """A content's blob (its first ``octets``), by its file's name."""
        with self._lock:
            row = (self._db.execute("SELECT content FROM contents WHERE file = ?", (name,)) if octets is None else
                   self._db.execute("SELECT substr(content, 1, ?) FROM contents WHERE file = ?", (octets, name))
                   ).fetchone()
        if row is None:
            raise FileNotFoundError(self.messages_dir / name)
        return bytes(row[0])

    def _prepare(self, job: _Job) -> tuple[list[Row], list[tuple[str, bytes]]]:
        """The rows of one message's copies, and its distinct contents (the message; each NDR)."""
        acceptance = job.acceptance
        message_file = next(self._unique) + ".eml"
        contents: list[tuple[str, bytes]] = []
        rows: list[Row] = []
        for delivery in acceptance.deliveries:
            if delivery.content is not None:
                # an NDR is rendered here, as its batch is made (the session only said what it is)
                name, body = next(self._unique) + ".eml", delivery.content.render()
                contents.append((name, body))
            else:
                name, body = message_file, acceptance.content
                if not contents or contents[0][0] != message_file:
                    contents.insert(0, (message_file, body))
            rows.append((
                next(self._unique), job.session, job.endpoint, acceptance.message_id, acceptance.mail_from,
                delivery.recipient, delivery.mailbox, delivery.folder,
                "ndr" if delivery.content is not None else "message", job.now, delivery.deliver_after,
                acceptance.spf, len(body), str(self.messages_dir / name),
            ))
        return rows, contents

    def _write_file(self, name: str, body: bytes) -> None:
        path = self.messages_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    # -- after a crash --------------------------------------------------------------------------

    def _repair(self) -> dict[str, int]:
        """Sweep ``.eml`` files no committed transaction names; write again those committed but
        missing or cut short. Returns how many of each."""
        with self._lock:
            sizes = dict(self._db.execute("SELECT file, length(content) FROM contents").fetchall())
        swept = rewritten = 0
        on_disk = {}
        with os.scandir(self.messages_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".tmp") or entry.name not in sizes:
                    Path(entry.path).unlink(missing_ok=True)
                    swept += 1
                else:
                    on_disk[entry.name] = entry.stat().st_size
        for name, size in sizes.items():
            if on_disk.get(name) != size:
                with self._lock:
                    (body,) = self._db.execute("SELECT content FROM contents WHERE file = ?", (name,)).fetchone()
                self._write_file(name, body)
                rewritten += 1
        return {"swept": swept, "rewritten": rewritten}

    def integrity(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # -- reading ---------------------------------------------------------------------------------

    def messages(self, *, mailbox: str | None = None, folder: str | None = None,
                 session: str | None = None, sessions: list[str] | None = None) -> list[StoredMessage]:
        query, args = "SELECT * FROM messages WHERE 1=1", []
        for column, value in (("mailbox", mailbox), ("folder", folder), ("session", session)):
            if value is not None:
                query += f" AND {column} = ?"
                args.append(value.lower() if column == "mailbox" else value)
        if sessions is not None:  # the copies of these sessions only: a window, not the whole store
            query += f" AND session IN ({','.join('?' * len(sessions))})"
            args.extend(sessions)
        with self._lock:
            rows: list[Row] = self._db.execute(query + " ORDER BY stored_at, rowid", args).fetchall()
        return [StoredMessage(*row, store=self) for row in rows]

    def recent(self, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` copies, newest first (the live view's: never the whole store)."""
        with self._lock:
            rows: list[Row] = self._db.execute("SELECT * FROM messages ORDER BY rowid DESC LIMIT ?",
                                               (limit,)).fetchall()
        return [StoredMessage(*row, store=self) for row in rows]

    def files_written(self, *, hurry: bool = True) -> None:
        """Return once the ``.eml`` files of every message answered so far are written (or were
        tried): written now, or (``hurry=False``) when the exporter's own time comes."""
        with self._export:
            target = self._committed
            self._urgent += hurry
            self._export.notify_all()
            try:
                self._export.wait_for(lambda: self._exported >= target or not self.exporter.is_alive())
            finally:
                self._urgent -= hurry

    def clear(self) -> None:
        with self._export_lock:  # no file is being written meanwhile, and none of these after
            with self._lock:
                self._db.execute("DELETE FROM messages")
                self._db.execute("DELETE FROM contents")
            self._exported_row = 0  # the contents' rows are counted from 1 again
        for path in self.messages_dir.glob("*.eml"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        # the batch in flight, then every message still waiting, is committed before the writer
        # is let go (their senders are not told: their loop no longer runs)
        self._closing = True
        self.writer.finish()
        while self._waiting:
            batch, self._waiting = self._waiting[:_BATCH], self._waiting[_BATCH:]
            try:
                prepared = [self._prepare(job) for job in batch]
                contents = [content for _, job_contents in prepared for content in job_contents]
                self.writer.commit([row for job_rows, _ in prepared for row in job_rows], contents)
                self._note_commit(contents)
            except Exception:
                log.exception("mail store: messages waiting at close could not be stored")
        self.writer.end()  # its input ends: it ends, the last batch committed
        with self._export:
            self._stopping = True  # the exporter writes what is left, and ends
            self._export.notify_all()
        self.exporter.join()
        with self._lock:
            self._db.close()
