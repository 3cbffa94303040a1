"""Where accepted mail lands: mailboxes and folders on SQLite (WAL), an .eml file per content.

Folders: Inbox, Sent Items, Junk, and Outbound (mail leaving for the internet). ``submit``
hands one accepted message to the store's thread and returns a future; the edge says 250 only
once it resolves, when the message is on disk for good. The thread takes every message waiting
(many sessions' worth) into one batch, and the writer process (``fakes.store_writer``) puts the
batch into one transaction with one fsync (group commit): the copies' rows, and each distinct
content as a blob, the one durable copy the 250 waits for. The ``.eml``
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
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from fakes.exo.errors import InternalError
from fakes.exo.events import Acceptance
from fakes.store_writer import read_frame, send_batch, wait_for_writer

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


class StoreWriteFailed(RuntimeError):
    """The writer process rolled a batch back (its error, as it said it)."""


class StoreWriterGone(OSError):
    """The writer process ended before it answered."""


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


@dataclass
class _Job:
    acceptance: Acceptance
    session: str
    endpoint: str
    now: float
    done: Future[list[str]] | None  # settled from the store's thread
    loop: asyncio.AbstractEventLoop | None = None  # where ``then`` is called
    then: Callable[[list[str] | BaseException], None] | None = None


_WARM_UP = _Job(Acceptance("", "", (), b"", (), False), "", "", 0.0, None)  # start the writer, store nothing
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
        # names of copies and files: random for this opening of the store, then counted (one
        # random draw per message was a system call in the store's thread)
        self._unique = map(f"{uuid.uuid4().hex[:20]}{{:012x}}".format, itertools.count())
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit's WAL frames are fsynced before COMMIT returns (the 250 waits for it)
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.durable = durable
        self._committer: subprocess.Popen[bytes] | None = None  # the process that commits the batches
        self._warming = False  # a start of the writer is asked for (``expect_mail``)
        self._db.executescript(SCHEMA)
        self.repaired = self._repair()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # messages, _WARM_UP, None: stop
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
        # the one thread that feeds the writer: every message waiting goes into its next batch
        self.feeder = threading.Thread(target=self._write_loop, name="mail-store", daemon=True)
        self.feeder.start()

    # -- writing ------------------------------------------------------------------------------

    def submit(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float) -> Future[list[str]]:
        """Queue an accepted message; the future gives its copies' ids once they are on disk."""
        done: Future[list[str]] = Future()
        self._jobs.put(_Job(acceptance, session, endpoint, now, done))
        return done

    def stored(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float,
               then: Callable[[list[str] | BaseException], None]) -> None:
        """``submit`` from the running event loop: ``then`` is called in the loop with the copies'
        ids once they are on disk (or with why they are not), the senders of one transaction in
        one hand-off (not a wake-up of the loop per message), and nothing between the hand-off
        and the call (a future's callbacks would wait for the loop's next turn)."""
        self._jobs.put(_Job(acceptance, session, endpoint, now, None, asyncio.get_running_loop(), then))

    def expect_mail(self) -> None:
        """A message may come soon: the writer process is started (by the store's thread) if it
        is not running, so that the first message does not wait for it. Cheap when it runs."""
        if self._committer is None and not self._warming:
            self._warming = True
            self._jobs.put(_WARM_UP)

    def deliver(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float) -> list[str]:
        """``submit`` and wait."""
        return self.submit(acceptance, session=session, endpoint=endpoint, now=now).result()

    def _write_loop(self) -> None:
        while self._write_next():
            pass

    def _write_next(self) -> bool:
        """Wait for a message, write every one waiting, tell their senders; False once told to
        stop. (A function of its own: nothing of a batch, a connection's callback among it, is
        held while the next is awaited.)"""
        job = self._jobs.get()
        if job is None:
            return False
        if job is _WARM_UP:
            with contextlib.suppress(OSError):  # the first batch tries again, and says why
                self._started_writer()
            self._warming = False
            return True
        batch = [job]
        with contextlib.suppress(queue.Empty):
            while len(batch) < _BATCH:
                more = self._jobs.get_nowait()
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                if more is _WARM_UP:  # the batch starts it
                    self._warming = False
                else:
                    batch.append(more)
        try:
            outcomes = self._write_batch(batch)
        except BaseException as exc:  # the feeder never dies: whatever failed, its senders hear 451
            outcomes = [(job, exc) for job in batch]
        _settle(outcomes)
        return True

    def _write_batch(self, batch: list[_Job]) -> list[Outcome]:
        """One transaction for the batch; what each job's sender is to hear."""
        rows: list[Row] = []
        contents: list[tuple[str, bytes]] = []
        failed: list[Outcome] = []
        ready: list[Outcome] = []
        for job in batch:
            try:
                job_rows, job_contents = self._prepare(job)
            except BaseException as exc:  # one message that cannot be stored fails alone
                failed.append((job, exc))
                continue
            rows += job_rows
            contents += job_contents
            ready.append((job, [row[0] for row in job_rows]))
        if not ready:
            return failed
        try:
            self._commit(rows, contents)
        except BaseException as exc:  # nothing of the batch is stored: every sender hears 451
            return failed + [(job, exc) for job, _ in ready]
        if contents:
            with self._export:
                now = time.monotonic()
                self._last_commit = now
                self._committed += 1
                if self._committed - self._exported == 1:  # the first the exporter has to wait for
                    self._first_unexported = now
                    self._export.notify_all()
        return failed + ready  # durable: the 250s go out

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
                # an NDR is rendered here, in the store's thread, not on the edge's loop
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

    def _commit(self, rows: list[Row], contents: list[tuple[str, bytes]]) -> None:
        """One transaction for a batch, in the writer process; durable when it returns."""
        writer = self._started_writer()
        if writer.stdin is None or writer.stdout is None:
            raise InternalError("expected the writer's pipes")
        why: OSError | None = None
        try:
            send_batch(writer.stdin.fileno(), rows, contents)
            answer = read_frame(writer.stdout.fileno())
        except OSError as exc:
            answer, why = None, exc
        if answer is None:  # it died (killed, out of memory): the next batch starts another
            code = self._end_writer(kill=True)
            raise StoreWriterGone(f"the store's writer process ended (exit status {code})") from why
        if answer:
            raise StoreWriteFailed(answer.decode())

    @property
    def writer_process(self) -> subprocess.Popen[bytes] | None:
        """The process that commits the batches (None before the first connection, and once closed)."""
        return self._committer

    def _end_writer(self, *, kill: bool = False) -> int | None:
        """Close the writer's pipes (it ends when its input does) and reap it; its exit status."""
        writer, self._committer = self._committer, None
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

    def _started_writer(self) -> subprocess.Popen[bytes]:
        """The writer process, started with the first batch (an edge that stores nothing has none),
        and again after one that ended between two batches (killed while it waited)."""
        if self._committer is not None and self._committer.poll() is not None:
            log.warning("mail store: the writer process ended (exit status %s); a new one takes over",
                        self._committer.returncode)
            self._end_writer()
        if self._committer is None:
            package_root = str(Path(__file__).resolve().parents[1])
            path = os.environ.get("PYTHONPATH")
            env = os.environ | {"PYTHONPATH": package_root + (os.pathsep + path if path else "")}
            self._committer = subprocess.Popen(
                [sys.executable, "-m", "fakes.store_writer", str(self.db_path), "FULL" if self.durable else "NORMAL"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
        return self._committer

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
        if self.feeder.is_alive():
            self._jobs.put(None)
            self.feeder.join()
        self._end_writer()  # its input ends: it ends, the last batch long committed
        with self._export:
            self._stopping = True  # the exporter writes what is left, and ends
            self._export.notify_all()
        self.exporter.join()
        with self._lock:
            self._db.close()


def _settle(outcomes: list[Outcome]) -> None:
    """Tell each job's sender (from the store's thread): a plain future at once, the jobs of an
    event loop in one call made soon in that loop."""
    on_loops: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for job, outcome in outcomes:
        if job.loop is not None:
            on_loops.setdefault(job.loop, []).append((job, outcome))
        elif job.done is None:
            raise InternalError("expected a future or a loop to tell")
        elif isinstance(outcome, BaseException):
            job.done.set_exception(outcome)
        else:
            job.done.set_result(outcome)
    for loop, settled in on_loops.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits on it
            loop.call_soon_threadsafe(_settle_here, settled)


def _settle_here(outcomes: list[Outcome]) -> None:
    """In the jobs' own loop: each one's ``then``, whatever the others' do."""
    for job, outcome in outcomes:
        if job.then is None:
            raise InternalError("expected a callback for a job of a loop's")
        try:
            job.then(outcome)
        except Exception:
            log.exception("mail store: a sender's callback failed")
