"""A full disk under the state directory (an 8 MiB tmpfs in a mount namespace of the edge's
own): mail gets 451 4.3.0 and nothing is stored without its 250; the banner, EHLO and DNS keep
answering; the edge says once what is wrong; when space returns it takes mail again by itself."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dnslib import DNSRecord

from tests.helpers import need

ROOT = Path(__file__).resolve().parents[2]


def address(described: dict, name: str) -> tuple[str, int]:
    host, port = described[name].rsplit(":", 1)
    return host, int(port)


def send(described: dict, context: ssl.SSLContext, n: int) -> tuple[int, str]:
    """One message; its message id and the final reply code (or 0 if the connection failed)."""
    message_id = f"<full-disk-{n}@contoso.com>"
    body = f"Message-ID: {message_id}\r\nFrom: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: {n}\r\n\r\n"
    try:
        with smtplib.SMTP(*address(described, "submission"), timeout=20) as client:
            client.starttls(context=context)
            client.login("scanner@contoso.com", "Scan-2026!")
            client.sendmail("scanner@contoso.com", ["alice@contoso.com"], body.encode() + b"x" * 200_000 + b"\r\n")
            return 250, message_id
    except smtplib.SMTPResponseException as refused:
        return refused.smtp_code, message_id
    except (smtplib.SMTPException, OSError):
        return 0, message_id


def test_a_full_disk_gets_451_stores_nothing_unacknowledged_keeps_answering_and_recovers(tmp_path):
    unshare = need("unshare", "util-linux")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=8m tmpfs {shlex.quote(str(disk))} && exec {shlex.quote(sys.executable)} "
              f"-m harness.cli serve --host 127.0.0.1 --state-dir {shlex.quote(str(disk / 'lab'))}")
    serve = subprocess.Popen([unshare, "-rm", "sh", "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = serve.stdout.readline()
    if not first:
        serve.wait(10)
        pytest.skip(f"no tmpfs in a mount namespace here: {serve.stderr.read()[-300:]}")
    described = json.loads(first)
    inside = Path(f"/proc/{serve.pid}/root") / str(disk).lstrip("/")  # the edge's view of its tmpfs
    context = ssl.create_default_context(cafile=str(inside / "lab" / "ca.pem"))
    context.check_hostname = False
    answers: dict[str, int] = {}
    try:
        code, mid = send(described, context, 0)
        assert code == 250
        answers[mid] = code
        with (inside / "filler").open("wb") as filler:  # the disk fills up
            try:
                while True:
                    filler.write(b"\0" * (1 << 20))
                    filler.flush()
            except OSError:
                pass
        for n in range(1, 6):
            code, mid = send(described, context, n)
            answers[mid] = code
        assert 451 in answers.values(), answers
        with smtplib.SMTP(*address(described, "submission"), timeout=10) as client:  # records past a page
            for _ in range(100):
                assert client.noop()[0] == 250
                client.putcmd("NOOP", "x " * 2000)
                assert client.getreply()[0] == 250
        with smtplib.SMTP(*address(described, "submission"), timeout=10) as client:  # still answering
            assert client.ehlo()[0] == 250
        reply = DNSRecord.parse(DNSRecord.question("smtp.office365.com", "A").send(*address(described, "dns"),
                                                                                   timeout=5))
        assert reply.rr
        (inside / "filler").unlink()  # space returns
        deadline = time.monotonic() + 20
        n = 6
        while time.monotonic() < deadline:
            code, mid = send(described, context, n)
            answers[mid] = code
            n += 1
            if code == 250:
                break
        assert code == 250, "the edge did not take mail again once space returned"
        for name in ("store.sqlite", "store.sqlite-wal"):  # a copy to read: the edge holds the store open
            if (inside / "lab" / "store" / name).exists():
                shutil.copyfile(inside / "lab" / "store" / name, tmp_path / name)
        db = sqlite3.connect(tmp_path / "store.sqlite")
        stored = {f"<{row[0]}>" for row in db.execute("SELECT DISTINCT message_id FROM messages")}
        db.close()
    finally:
        serve.terminate()
        _out, err = serve.communicate(timeout=30)
    acknowledged = {mid for mid, code in answers.items() if code == 250}
    assert acknowledged <= stored, f"acknowledged but not stored: {acknowledged - stored}"
    assert not (stored - acknowledged), f"stored without its 250: {stored - acknowledged}"
    assert err.count("cannot write the records") <= 1, err[-2000:]
