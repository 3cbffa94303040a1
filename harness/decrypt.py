"""TLS in a capture, opened with the key log its server or client wrote.

The key log is the NSS format Wireshark reads (``exoedge serve --keylog``, ``SSLKEYLOGFILE``):
one line a secret, ``LABEL <client random hex> <secret hex>``; TLS 1.0-1.2 give ``CLIENT_RANDOM``
(the master secret), TLS 1.3 the traffic secrets of each stage. scapy does the cryptography: each
connection's records go through one of its ``tlsSession`` objects, turned to face the side that
wrote them, with the key log's secrets handed to it.

A connection is opened only when both of its Finished messages decrypt: a key log with other
secrets (another run's, a client's of the same address) gives ciphertext that scapy would hand
back as if it were data, so nothing is believed before the handshake proved the keys right.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from fakes.exo.errors import ExoEdgeError

LABELS = frozenset({
    "CLIENT_RANDOM",  # TLS 1.0-1.2: the master secret
    "CLIENT_EARLY_TRAFFIC_SECRET", "EARLY_EXPORTER_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
})
# the secret a connection cannot be read without, by the version it uses
_NEEDED = ("CLIENT_RANDOM", "CLIENT_TRAFFIC_SECRET_0")

KeyLog = dict[str, dict[bytes, bytes]]


class KeyLogError(ExoEdgeError, ValueError):
    """A key log that cannot be used: the message names the file and the line."""


def read_keylog(path: Path) -> KeyLog:
    """The secrets of an NSS key log, by label and client random. A line that is none names its
    place (``file:line``); the secrets themselves never appear in an error."""
    keys: KeyLog = {}
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise KeyLogError(f"{path}: cannot read the key log ({reason})") from None
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 3 or words[0] not in LABELS:
            raise KeyLogError(f"{path}:{number}: not a line of an NSS key log (LABEL CLIENT_RANDOM SECRET, "
                              f"LABEL one of {', '.join(sorted(LABELS))}); it begins {words[0][:40]!r}")
        try:
            random, secret = bytes.fromhex(words[1]), bytes.fromhex(words[2])
        except ValueError:
            raise KeyLogError(f"{path}:{number}: {words[0]}: the client random and the secret must be "
                              "hexadecimal") from None
        if len(random) != 32:
            raise KeyLogError(f"{path}:{number}: {words[0]}: a client random is 32 octets, "
                              f"this one {len(random)}")
        keys.setdefault(words[0], {})[random] = secret
    if not keys:
        raise KeyLogError(f"{path}: no TLS secrets in it (an empty key log: was the endpoint run with it?)")
    return keys


class Opener:
    """One connection's TLS, record by record in the order they were sent, both directions."""

    def __init__(self, keys: KeyLog) -> None:
        self.keys = keys
        self.session: Any = None
        self.from_client = True  # the side the session now reads
        self.finished = {True: False, False: False}  # a Finished decrypted from the client, the server
        self.failed = False  # no keys for it, or they did not open it: nothing more is tried
        self.certificate: bytes | None = None  # the server's, once decrypted (TLS 1.3 sends it encrypted)

    @property
    def opened(self) -> bool:
        return all(self.finished.values()) and not self.failed

    def record(self, record: bytes, *, from_client: bool) -> bytes | None:
        """The application data one record carries in the clear (b"" for a handshake record), or
        None once the connection cannot be opened."""
        if self.failed:
            return None
        from scapy.layers.tls.handshake import TLSFinished
        from scapy.layers.tls.record import TLSApplicationData

        session = self._facing(from_client)
        try:
            packet = _tls(record, session)
        except Exception:  # scapy could not take it: the connection stays closed to us
            self.failed = True
            return None
        self.session = packet.tls_session
        if self.session.client_random is not None and not self._has_keys():
            self.failed = True
            return None
        if packet.haslayer(TLSFinished):
            self.finished[from_client] = True
        if self.certificate is None and not from_client:
            with contextlib.suppress(Exception):  # a certificate scapy cannot take apart is only not shown
                self.certificate = first_certificate(packet)
        if not packet.haslayer(TLSApplicationData):
            return b""
        if not self.opened:  # data before both Finished decrypted: the keys are not this connection's
            self.failed = True
            return None
        return bytes(packet[TLSApplicationData].data)

    def _facing(self, from_client: bool) -> Any:
        from scapy.layers.tls.session import tlsSession

        if self.session is None:
            self.session = tlsSession(connection_end="server")  # reading what the client wrote
            self.session.nss_keys = self.keys
        elif from_client != self.from_client:
            self.session = self.session.mirror()
        self.from_client = from_client
        return self.session

    def _has_keys(self) -> bool:
        random = self.session.client_random
        return any(random in self.keys.get(label, {}) for label in _NEEDED)


def first_certificate(packet: Any) -> bytes | None:
    """The DER of the first certificate a TLS record's Certificate message carries (1.2 or 1.3)."""
    from scapy.layers.tls.handshake import TLS13Certificate, TLSCertificate

    for layer in packet.iterpayloads():  # records; a TLS 1.3 record's messages are in its inner plaintext
        inner = getattr(layer, "inner", None)
        for message in [*(getattr(layer, "msg", None) or []), *(getattr(inner, "msg", None) or [])]:
            if isinstance(message, TLSCertificate | TLS13Certificate) and message.certs:
                first = message.certs[0]  # (length, Cert); in TLS 1.3 inside an entry with extensions
                length_and_cert = first.cert if isinstance(message, TLS13Certificate) else first
                return bytes(length_and_cert[1].der)
    return None


def _tls(record: bytes, session: Any) -> Any:
    from scapy.layers.tls.record import TLS

    scapy_log = logging.getLogger("scapy.runtime")
    level = scapy_log.level
    scapy_log.setLevel(logging.ERROR)  # a record it reads as Raw is judged here, not warned about
    try:
        return TLS(record, tls_session=session)
    finally:
        scapy_log.setLevel(level)
