"""Clients the tests drive against a running edge: Python's smtplib, pinned as asked."""

from __future__ import annotations

import base64
import contextlib
import re
import smtplib
import socket
import ssl
import warnings
from pathlib import Path

from fakes.edge import Edge
from fakes.tls import SSL_VERSIONS

SUFFIX = re.compile(
    r" \[[A-Z0-9]+\.[a-z0-9]+\.prod\.outlook\.com \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]$"
)
MX_SUFFIX = re.compile(
    r" \[[A-Z0-9]+\.eop-[A-Z]{3}\d\d\.prod\.protection\.outlook\.com "
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]$"
)
TLS_VERSIONS = SSL_VERSIONS
MESSAGE = (
    "From: {sender}\r\nTo: {to}\r\nSubject: exo-edge test\r\n"
    "Date: Fri, 27 Nov 2026 02:00:00 +0000\r\nMessage-ID: <{tag}@device.test>\r\n\r\n"
    "Scanned page attached.\r\n"
)


def message(sender: str, to: str, tag: str = "m1") -> bytes:
    return MESSAGE.format(sender=sender, to=to, tag=tag).encode()


def client_context(edge: Edge, version: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(edge.ca.cert_path))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
        if version in ("TLSv1", "TLSv1.1"):
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class Device(smtplib.SMTP):
    """smtplib as a device uses it: connected to the edge, naming the host it was told."""

    def __init__(self, edge: Edge, endpoint: str = "submission", source: str = "127.0.0.1") -> None:
        host, port = edge.addresses[endpoint]
        super().__init__(host, port, local_hostname="device.test", source_address=(source, 0), timeout=10)
        self._host = edge.hostname(endpoint)  # SNI and certificate check
        self.edge = edge

    def connect(self, host: str = "localhost", port: int = 0, source_address=None):  # type: ignore[override]
        code, text = super().connect(host, port, source_address)
        self.banner = f"{code} {text.decode()}"
        return code, text

    def secure(self, version: str | None = None) -> Device:
        self.ehlo()
        self.starttls(context=client_context(self.edge, version))
        self.ehlo()
        return self

    def reply(self, command: str) -> str:
        """Send a raw command; the reply as one line ``code text``."""
        code, text = self.docmd(command)
        return f"{code} {text.decode()}"

    def send_data(self, body: bytes) -> str:
        code, text = self.data(body)
        return f"{code} {text.decode()}"


def submit(edge: Edge, user: str = "scanner@contoso.com", password: str = "Scan-2026!",
           sender: str | None = None, to: tuple[str, ...] = ("alice@contoso.com",),
           body: bytes | None = None, version: str | None = None) -> str:
    """One whole submission; returns the reply to the end of DATA (or the first refusal)."""
    sender = sender or user
    with Device(edge) as device:
        device.secure(version)
        device.login(user, password)
        code, text = device.mail(sender)
        if code != 250:
            return f"{code} {text.decode()}"
        for rcpt in to:
            code, text = device.rcpt(rcpt)
            if code != 250:
                return f"{code} {text.decode()}"
        return device.send_data(body or message(sender, to[0]))


class RawClient:
    """A socket that sends exactly the bytes it is given: pipelining, BDAT, half-close, bad bytes."""

    def __init__(self, edge: Edge, endpoint: str = "submission", source: str = "127.0.0.1") -> None:
        self.edge = edge
        self.endpoint = endpoint
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            edge.addresses[endpoint], timeout=10, source_address=(source, 0))
        self._buf = b""
        self.banner = self.replies(1)[0]

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> RawClient:
        self.sock.sendall(data)
        return self

    def _line(self) -> bytes | None:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def replies(self, count: int) -> list[str]:
        """The next ``count`` replies, each as its last line (``250 …``); fewer if the edge closes."""
        out: list[str] = []
        while len(out) < count:
            line = self._line()
            if line is None:
                break
            if line[3:4] != b"-":
                out.append(line.decode("utf-8", "replace"))
        return out

    def rest(self) -> list[str]:
        """Every reply until the edge closes the connection."""
        return self.replies(10**6)

    def starttls(self) -> RawClient:
        self.send(b"EHLO device.test\r\n").replies(1)
        assert self.send(b"STARTTLS\r\n").replies(1)[0].startswith("220 2.0.0")
        hostname = self.edge.hostname(self.endpoint)
        self.sock = client_context(self.edge).wrap_socket(self.sock, server_hostname=hostname)
        self.send(b"EHLO device.test\r\n").replies(1)
        return self

    def login(self, user: str = "scanner@contoso.com", password: str = "Scan-2026!") -> RawClient:
        self.starttls()
        b64 = base64.b64encode
        self.send(b"AUTH LOGIN " + b64(user.encode()) + b"\r\n").replies(1)
        assert self.send(b64(password.encode()) + b"\r\n").replies(1)[0].startswith("235 2.7.0")
        return self

    def shutdown_write(self) -> None:
        if isinstance(self.sock, ssl.SSLSocket):
            # TLS 1.3 has no half-close of its own: shut the TCP sending side under it
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        else:
            self.sock.shutdown(socket.SHUT_WR)


def need(tool: str, package: str) -> str:
    """A third-party program's path; missing, it skips the test locally and fails it in CI."""
    import os
    import shutil

    import pytest

    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install -y {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def live_lab(state_dir: Path, judge=None):  # noqa: ANN001, ANN201 - yields (edge, live address, lines, closed event)
    """An edge of its own with the live view on, and the terminal's line of each closed session
    (``judge``: a device's rolling verdict, as exoedge serve gives it from harness.fleet)."""
    import asyncio
    import threading

    from fakes.edge import EdgeThread

    closed: list[str] = []
    seen = threading.Event()

    def terminal(session) -> None:  # noqa: ANN001 - a LiveSession
        closed.append(session.line())
        seen.set()

    thread = EdgeThread(Edge(state_dir=state_dir))
    edge = thread.start()
    try:
        live = asyncio.run_coroutine_threadsafe(edge.start_live(0, on_closed=terminal, judge=judge),
                                                thread.loop).result(10)
        yield edge, live, closed, seen
    finally:
        thread.stop()
