"""Clients the tests drive against a running edge: Python's smtplib, pinned as asked."""

from __future__ import annotations

import re
import smtplib
import ssl
import warnings

from fakes.edge import Edge

SUFFIX = re.compile(
    r" \[[A-Z0-9]+\.[a-z0-9]+\.prod\.outlook\.com \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]$"
)
MX_SUFFIX = re.compile(
    r" \[[A-Z0-9]+\.mail\.protection\.outlook\.com \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]$"
)
TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
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
