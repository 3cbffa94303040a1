"""Where accepted mail lands: mailboxes and folders on SQLite (WAL), one .eml file per copy.

Folders: Inbox, Sent Items, Junk, and Outbound (mail leaving for the internet). ``deliver``
writes every copy of one accepted message in one transaction; the edge says 250 only after it
returns. Calls block, so the edge runs them in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from fakes.exo.events import Acceptance

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id            TEXT PRIMARY KEY,
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
"""


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

    @property
    def delayed(self) -> bool:
        return self.deliver_after > self.stored_at

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


class MailStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.messages_dir = directory / "messages"
        self.messages_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)  # the mail of the tenant: its owner's only
        self.db_path = directory / "store.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def deliver(self, acceptance: Acceptance, *, session: str, endpoint: str, now: float) -> list[str]:
        """Store every copy of an accepted message; returns their ids once committed."""
        rows = []
        for delivery in acceptance.deliveries:
            copy_id = uuid.uuid4().hex
            # an NDR is rendered here, in the store's worker thread, not on the edge's loop
            body = delivery.content.render() if delivery.content is not None else acceptance.content
            path = self.messages_dir / f"{copy_id}.eml"
            path.write_bytes(body)
            rows.append((
                copy_id, session, endpoint, acceptance.message_id, acceptance.mail_from,
                delivery.recipient, delivery.mailbox, delivery.folder,
                "ndr" if delivery.content is not None else "message", now, delivery.deliver_after,
                acceptance.spf, len(body), str(path),
            ))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [row[0] for row in rows]

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
            rows = self._db.execute(query + " ORDER BY stored_at, rowid", args).fetchall()
        return [StoredMessage(*row) for row in rows]

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM messages")
        for path in self.messages_dir.glob("*.eml"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
