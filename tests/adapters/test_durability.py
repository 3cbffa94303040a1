"""Every 250 is on disk for good: a store whose commit fails answers 451 and keeps nothing, and an
edge killed with SIGKILL under load, again and again, loses no message it answered 250 for,
stores none twice, and leaves a store and a records file that the next start repairs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
from email.utils import make_msgid
from pathlib import Path

import pytest

from fakes.exo.events import Acceptance, Delivery
from fakes.exo.observed import Disconnect
from fakes.record import RecordLog
from fakes.store import MailStore, StoreWriteFailed

MESSAGE = ("From: printer@contoso.com\r\nTo: alice@contoso.com\r\nSubject: load\r\n"
           "Date: Fri, 27 Nov 2026 02:00:00 +0000\r\nMessage-ID: {id}\r\n\r\n" + "x" * 900 + "\r\n")
KILLS = int(os.environ.get("EXO_KILL_ROUNDS", "20"))


def test_a_commit_that_fails_is_a_451_and_nothing_is_half_stored(edge):
    # the database refuses the batch's rows after it took the content: the writer's transaction
    # must give both back
    with contextlib.closing(sqlite3.connect(edge.store.db_path)) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN "
                   "SELECT RAISE(ABORT, 'disk I/O error (the fsync was lost)'); END")
        db.commit()
    host, port = edge.addresses["mx"]
    try:
        with smtplib.SMTP(host, port, local_hostname="device.lab", source_address=("127.0.0.10", 0)) as client:
            client.ehlo()
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("printer@contoso.com", ["alice@contoso.com"], MESSAGE.format(id=make_msgid()))
    finally:  # the edge is shared by the module's tests
        with contextlib.closing(sqlite3.connect(edge.store.db_path)) as db:
            db.execute("DROP TRIGGER refuse")
            db.commit()
    assert refused.value.smtp_code == 451 and b"4.3.0" in refused.value.smtp_error
    assert any("fsync was lost" in (getattr(e, "error", None) or "") for e in edge.records.events())
    assert edge.store.messages() == []
    with contextlib.closing(sqlite3.connect(edge.store.db_path)) as db:
        assert db.execute("SELECT count(*) FROM contents").fetchone() == (0,)
    assert list(edge.store.messages_dir.iterdir()) == []


def _serve(state: Path) -> tuple[subprocess.Popen[str], str, int]:
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--state-dir", str(state)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    where = json.loads(process.stdout.readline())  # printed once every endpoint listens
    host, _, port = where["mx"].rpartition(":")
    return process, host, int(port)


def _load(host: str, port: int, acked: list[str], heard: threading.Condition, stop: threading.Event,
          client: int) -> None:
    """One device sending until the edge dies; the Message-IDs it heard 250 for."""
    try:
        with smtplib.SMTP(host, port, local_hostname="device.lab", timeout=10,
                          source_address=(f"127.0.0.{100 + client}", 0)) as smtp:
            smtp.ehlo()
            while not stop.is_set():
                message_id = make_msgid(domain="load.lab")
                smtp.sendmail("printer@contoso.com", ["alice@contoso.com"], MESSAGE.format(id=message_id))
                with heard:
                    acked.append(message_id.strip("<>"))
                    heard.notify_all()
    except (OSError, smtplib.SMTPException):
        pass  # the edge was killed
    finally:
        with heard:
            heard.notify_all()


def test_kill_9_under_load_loses_no_250_and_stores_none_twice(tmp_path):
    state = tmp_path / "lab"
    acked: list[str] = []
    for _ in range(KILLS):
        process, host, port = _serve(state)
        stop, heard, enough = threading.Event(), threading.Condition(), len(acked) + 60
        clients = [threading.Thread(target=_load, args=(host, port, acked, heard, stop, n)) for n in range(20)]
        for thread in clients:
            thread.start()
        try:
            with heard:  # until 60 more 250s were heard: then the kill lands mid-flight
                heard.wait_for(lambda enough=enough, clients=clients: len(acked) >= enough
                               or not any(t.is_alive() for t in clients), 60)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stdout.close()
            stop.set()
            for thread in clients:
                thread.join()
    store = MailStore(state / "store")  # opening repairs what the last kill left
    try:
        copies = [m.message_id for m in store.messages()]
        assert store.integrity() == "ok"
        missing = set(acked) - set(copies)
        assert not missing, f"{len(missing)} messages answered 250 are not in the store"
        twice = {m for m in copies if copies.count(m) > 1}
        assert not twice
        for copy in store.messages():
            content = copy.read()  # whole: the body's end is there, and the size recorded
            assert len(content) == copy.size and content.endswith(b"x" * 900 + b"\r\n")
        names = {Path(m.path).name for m in store.messages()}
        assert {p.name for p in store.messages_dir.iterdir()} == names  # no orphan left
    finally:
        store.close()
    records = RecordLog(state / "records.jsonl")
    records.close()
    for line in (state / "records.jsonl").read_text().splitlines():
        json.loads(line)
    assert len(acked) >= 60 * KILLS


def test_opening_the_store_sweeps_orphans_and_writes_cut_files_again(edge):
    host, port = edge.addresses["mx"]
    with smtplib.SMTP(host, port, local_hostname="device.lab", source_address=("127.0.0.10", 0)) as client:
        client.sendmail("printer@contoso.com", ["alice@contoso.com"], MESSAGE.format(id=make_msgid()))
        client.sendmail("printer@contoso.com", ["alice@contoso.com"], MESSAGE.format(id=make_msgid()))
    edge.store.files_written()
    copy, unwritten = edge.store.messages()
    whole, also = copy.read(), unwritten.read()
    Path(copy.path).write_bytes(whole[:10])  # killed while the file was being written
    Path(unwritten.path).unlink()  # killed after the commit (the 250), before its file was written
    orphan = edge.store.messages_dir / "0123456789abcdef.eml"  # killed before its transaction committed
    orphan.write_bytes(b"Subject: never acknowledged\r\n")
    again = MailStore(edge.store.directory)
    try:
        assert again.repaired == {"swept": 1, "rewritten": 2}
        assert not orphan.exists() and copy.read() == whole and unwritten.read() == also
    finally:
        again.close()


def test_a_partial_last_record_line_is_cut_when_the_log_is_opened(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"session": "s1", "t": 1.0, "kind": "connect"}\n{"session": "s1", "t": 1.1, "ki')
    log = RecordLog(path)
    log.append(Disconnect(session="s2", t=2.0))
    log.close()
    assert log.repaired == len('{"session": "s1", "t": 1.1, "ki')
    assert [json.loads(line)["session"] for line in path.read_text().splitlines()] == ["s1", "s2"]


def _accepted(n: int) -> Acceptance:
    message_id = f"<{n}@load.lab>"
    return Acceptance(message_id=message_id, mail_from="printer@contoso.com", recipients=("alice@contoso.com",),
                      content=MESSAGE.format(id=message_id).encode(), delayed=False,
                      deliveries=(Delivery("Inbox", "alice@contoso.com", "alice@contoso.com", 0.0),))


def test_the_eml_files_follow_when_the_store_is_quiet_and_none_outlives_a_clear(tmp_path):
    store = MailStore(tmp_path / "store", durable=False)
    try:
        for n in range(3):
            store.deliver(_accepted(n), session="s1", endpoint="mx", now=1.0)
        store.files_written(hurry=False)  # written in the exporter's own time, unasked
        copies = store.messages()
        assert sorted(p.name for p in store.messages_dir.iterdir()) == sorted(Path(c.path).name for c in copies)
        assert all(Path(c.path).read_bytes() == c.read() == _accepted(n).content for n, c in enumerate(copies))
        store.clear()
        store.deliver(_accepted(9), session="s2", endpoint="mx", now=2.0)
        store.files_written()
        (copy,) = store.messages()
        assert [p.name for p in store.messages_dir.iterdir()] == [Path(copy.path).name]
        assert Path(copy.path).read_bytes() == _accepted(9).content
        store.deliver(_accepted(10), session="s2", endpoint="mx", now=3.0)
    finally:
        store.close()  # what is left is written before it returns
    assert len(list(store.messages_dir.iterdir())) == 2


def test_the_writer_process_is_replaced_when_it_dies_and_a_batch_it_cannot_write_is_rolled_back(tmp_path):
    store = MailStore(tmp_path / "store", durable=False)
    try:
        store.deliver(_accepted(1), session="s1", endpoint="mx", now=1.0)
        first = store.writer.process
        assert first is not None
        first.kill()  # between two batches: the next is written by a new writer, not refused
        first.wait()
        store.deliver(_accepted(2), session="s1", endpoint="mx", now=2.0)
        second = store.writer.process
        assert second is not None and second.pid != first.pid
        # a batch the database refuses (two contents under one name) is not half kept
        with pytest.raises(StoreWriteFailed, match="UNIQUE"):
            store.writer.commit([], [("twice.eml", b"a"), ("twice.eml", b"b")])
        with pytest.raises(FileNotFoundError):
            store.content("twice.eml")
        store.deliver(_accepted(3), session="s1", endpoint="mx", now=3.0)
        assert store.writer.process is second
        assert [m.message_id for m in store.messages()] == [_accepted(n).message_id for n in (1, 2, 3)]
    finally:
        store.close()
    assert second.returncode == 0  # its input ended: it closed the database and left


def test_a_message_the_writer_cannot_take_yet_never_stops_the_edge_answering_others(edge):
    """The store's pipe to its writer is the loop's to drive: with the writer stopped, a message
    larger than the pipe holds waits for it, and meanwhile every other device is answered; once
    the writer goes on, the message is stored whole and only then answered 250."""
    host, port = edge.addresses["mx"]
    big = MESSAGE.format(id=make_msgid()).encode() + (b"y" * 998 + b"\r\n") * 2048  # 2 MB; a pipe holds 64 KiB
    with smtplib.SMTP(host, port, local_hostname="device.lab", source_address=("127.0.0.10", 0),
                      timeout=30) as other:  # a loop stuck in a write fails the NOOP, not the run
        other.ehlo()  # a connection starts the writer
        writer = edge.store.writer.process
        assert writer is not None and os.sched_getscheduler(writer.pid) == os.SCHED_BATCH
        mark = edge.records.mark()
        answered: list[object] = []

        def send_big() -> None:
            with smtplib.SMTP(host, port, local_hostname="device.lab", source_address=("127.0.0.10", 0)) as client:
                answered.append(client.sendmail("printer@contoso.com", ["alice@contoso.com"], big))

        sender = threading.Thread(target=send_big)
        os.kill(writer.pid, signal.SIGSTOP)
        try:
            sender.start()
            # the whole message was read and handed to the store (its record comes first)
            assert edge.records.wait_for(lambda events: any(e.kind == "message" for e in events), 30, since=mark)
            assert other.noop()[0] == 250  # the loop is not stuck in a write to the writer
            assert not answered and sender.is_alive()  # no 250 before the message is on disk
        finally:
            os.kill(writer.pid, signal.SIGCONT)
        sender.join(30)
    assert answered == [{}]
    assert len([m for m in edge.store.messages() if m.read().endswith(big)]) == 1  # whole, once
