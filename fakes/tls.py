"""TLS as Exchange Online's edge does it, on a lab CA that devices import once.

- ``LabCA.open(state_dir)``: the lab's root, intermediate and server leaves (``fakes.pki``) kept in
  the state directory, so a device that imported the root (ca.pem) keeps trusting the edge
  across restarts; beside them the issuer key for XOAUTH2 tokens.
- ``server_context(...)``: TLS 1.2 and 1.3 with the reference's TLS 1.2 cipher suites, and
  TLS 1.0/1.1 accepted at the handshake only, so that the session can answer 4.7.66 (submission);
  the MX refuses them at the handshake (``mx_versions``).
- ``ClientHello``: what a client offered (versions, cipher suites, SNI), parsed with scapy from
  the raw handshake message that ``SSLContext._msg_callback`` hands over, failed handshakes too.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import os
import ssl
import stat
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from fakes.exo.errors import UsageError
from fakes.exo.names import MX_TLS_VERSIONS, TLS_VERSIONS, TLS_WIRE_CODES
from fakes.exo.observed import ClientHelloSeen
from fakes.exo.tokens import generate_issuer_key
from fakes.pki import LEAF_DAYS, RENEW_BEFORE, SERVER_LEAVES, Authority, Leaf

# [C] technical-reference-details-about-encryption: TLS 1.2 suites, strongest first (OpenSSL names).
REFERENCE_TLS12_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)

class LabCA:
    """The lab's certificate authority (``fakes.pki``: root, intermediate, leaves) and the
    XOAUTH2 token issuer key, kept in one directory."""

    def __init__(self, authority: Authority, directory: Path, issuer_key: bytes) -> None:
        self.authority = authority
        self.directory = directory
        self.issuer_key = issuer_key

    @classmethod
    def open(cls, directory: Path) -> LabCA:
        """The CA and issuer key of ``directory``, made there on first use. Several processes
        (``serve``, ``ca``, ``token``) may start at once on a fresh directory: an exclusive lock
        makes them agree on one CA and one key, and each file appears whole, 0600 from the start.
        Server leaves due to expire within a month are renewed here."""
        directory = private_directory(directory)
        with _locked(directory / ".lock"):
            authority = cls._authority(directory)
            issuer = directory / "token-issuer.key"
            if not issuer.exists():
                _write_atomically(issuer, generate_issuer_key(), 0o600)
            ca = cls(authority, directory, issuer.read_bytes())
            for kind in SERVER_LEAVES:
                ca._server_leaf_files(kind, renew=True)
            return ca

    @staticmethod
    def _authority(directory: Path) -> Authority:
        files = [directory / n for n in ("ca.pem", "ca.key", "intermediate.pem", "intermediate.key")]
        if all(f.exists() for f in files):
            return Authority(*(f.read_bytes() for f in files))
        if files[0].exists() and files[1].exists():  # a root from before intermediates: keep it
            authority = Authority(files[0].read_bytes(), files[1].read_bytes(), b"", b"").with_new_intermediate()
        else:
            authority = Authority.create()
        for path, data, mode in zip(files, (authority.root_pem, authority.root_key_pem,
                                            authority.intermediate_pem, authority.intermediate_key_pem),
                                    (0o644, 0o600, 0o644, 0o600), strict=True):
            _write_atomically(path, data, mode)
        return authority

    @property
    def cert_path(self) -> Path:
        """The root: the one file a device imports."""
        return self.directory / "ca.pem"

    def _server_leaf_files(self, kind: str, *, renew: bool = False) -> tuple[Path, Path]:
        cert, key = self.directory / f"{kind}.pem", self.directory / f"{kind}.key"
        leaf = Leaf(cert.read_bytes(), b"") if cert.exists() and key.exists() else None
        fresh = leaf is not None and not leaf.expires_within(RENEW_BEFORE) and leaf.shaped_like_a_public_cas
        if renew and not fresh:
            common_name, names = SERVER_LEAVES[kind]
            self._write_leaf(self.authority.issue(common_name, *names), cert, key)
        return cert, key

    def server_leaf(self, kind: str) -> tuple[Path, Path]:
        """Certificate chain and key files of the submission or MX leaf."""
        return self._server_leaf_files(kind)

    @staticmethod
    def _write_leaf(leaf: Leaf, cert: Path, key: Path) -> tuple[Path, Path]:
        cert.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(cert, leaf.chain_pem, 0o644)
        _write_atomically(key, leaf.key_pem, 0o600)
        return cert, key

    def issue(self, common_name: str, *names: str, days: int = LEAF_DAYS,
              not_before: datetime.datetime | None = None, tag: str = "") -> tuple[Path, Path]:
        """Another leaf of this CA (a wrong name, an expired one), written under ``leaves/``."""
        stem = self.directory / "leaves" / f"{tag or common_name}"
        return self._write_leaf(self.authority.issue(common_name, *names, days=days, not_before=not_before),
                                stem.with_suffix(".pem"), stem.with_suffix(".key"))

    def stranger(self) -> LabCA:
        """A CA no device trusts, for "the certificate is from an unknown CA" scenarios."""
        directory = private_directory(self.directory / "stranger")
        return LabCA(Authority.create("unknown"), directory, self.issuer_key)

    def client_certificate(self, name: str, directory: Path) -> tuple[Path, Path]:
        """A client certificate for ``name`` (CN and SAN) with its chain, written as cert and key files."""
        stem = name if len(name) <= 200 else hashlib.sha256(name.encode()).hexdigest()[:32]  # a file name: 255 octets
        return self._write_leaf(self.authority.issue(name, name), directory / f"{stem}.pem", directory / f"{stem}.key")

    def configure_trust(self, ctx: ssl.SSLContext) -> None:
        """Trust the lab root; the intermediate is there too so that a client certificate sent
        without its chain (many devices send the leaf alone) still reaches the root."""
        ctx.load_verify_locations(cadata=(self.authority.root_pem + self.authority.intermediate_pem).decode())


def private_directory(directory: Path) -> Path:
    """Where the state lives (mail, records and keys, each file private from its creation): a new
    directory is made readable by its owner only; an existing one of ours is used as it is (its
    mode is the owner's choice, never changed); inside a directory someone else owns (a shared
    /tmp) a private ``exo-edge-<uid>`` is made and used, and refused if another user made it first."""
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory
    if not directory.is_dir():
        raise UsageError(f"the state directory {directory} is not a directory")
    if directory.stat().st_uid == os.getuid():
        return directory
    own = directory / f"exo-edge-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        own.mkdir(mode=0o700)
    held = own.lstat()
    if not stat.S_ISDIR(held.st_mode) or held.st_uid != os.getuid():
        raise UsageError(f"{own} (the private state directory inside {directory}, which is not yours) exists and "
                         "is not a directory of yours: name another --state-dir")
    return own


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write a temporary file with ``mode`` from its creation, fsync it, rename it into place."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ssl's names for the versions of fakes.exo.names.TLS_VERSIONS that OpenSSL still speaks
SSL_VERSIONS = {name: getattr(ssl.TLSVersion, name.replace(".", "_")) for name in TLS_VERSIONS[1:]}


def mx_versions(versions: tuple[str, ...] | None) -> tuple[str, ...]:
    """What the MX offers of ``versions`` (all by default): never TLS 1.0 or 1.1. A scenario that
    narrows the edge to legacy versions alone gets them (it asked for exactly that)."""
    kept = tuple(v for v in (versions or tuple(SSL_VERSIONS)) if v in MX_TLS_VERSIONS)
    return kept or versions or MX_TLS_VERSIONS


def keylog_file(path: Path) -> None:
    """Create the key log readable by its owner only (the keys decrypt every lab session)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def server_context(ca: LabCA, *, leaf: tuple[Path, Path], request_client_certificate: bool = False,
                   versions: tuple[str, ...] | None = None, keylog: Path | None = None) -> ssl.SSLContext:
    """The edge's TLS. ``versions`` narrows what it offers (a scenario's "edge offers only 1.2");
    ``keylog``: write every session's secrets there (NSS key log format), for Wireshark."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if keylog is not None:
        keylog_file(keylog)
        ctx.keylog_filename = str(keylog)
    chosen = sorted(versions or SSL_VERSIONS, key=list(SSL_VERSIONS).index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Accept TLS 1.0/1.1 at the handshake so the session can refuse it with 4.7.66 afterwards.
        ctx.minimum_version = SSL_VERSIONS[chosen[0]]
        ctx.maximum_version = SSL_VERSIONS[chosen[-1]]
    ctx.set_ciphers(":".join(REFERENCE_TLS12_CIPHERS) + ":@SECLEVEL=0")
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(*leaf)  # the leaf and the intermediate: the chain a device must build
    if request_client_certificate:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ca.configure_trust(ctx)
    return ctx


def hello_message(records: bytes) -> bytes | None:
    """The ClientHello handshake message in the first octets a client sent once TLS began: the
    payloads of its handshake records (a 5-octet header each) up to the message's own length,
    at most ``MAX_HELLO`` octets; None when they are no TLS handshake. The edge keeps what came in
    rather than asking OpenSSL to call back for every TLS message of every connection."""
    out, pos = bytearray(), 0
    while pos + 5 <= len(records) and records[pos] == 22 and len(out) < MAX_HELLO:
        length = int.from_bytes(records[pos + 3:pos + 5], "big")
        out += records[pos + 5:pos + 5 + length]
        pos += 5 + length
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            del out[4 + int.from_bytes(out[1:4], "big"):]
            break
    return bytes(out[:MAX_HELLO]) or None


@dataclass(frozen=True)
class ClientHello:
    legacy_version: str
    versions: tuple[str, ...]  # supported_versions when sent, else the legacy version alone
    cipher_suites: tuple[str, ...]
    sni: str | None

    @property
    def highest_version(self) -> str:
        order = list(TLS_WIRE_CODES.values())
        known = [v for v in self.versions if v in order]
        return max(known, key=order.index) if known else self.legacy_version

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["highest_version"] = self.highest_version
        return data

    @classmethod
    def parse(cls, message: bytes) -> ClientHello:
        """Parse a ClientHello handshake message (or a whole TLS record carrying one): dpkt takes
        it apart (about 50 microseconds); one dpkt cannot read (cut short, say) goes to scapy's
        more forgiving dissection (over a millisecond)."""
        if message[:1] == b"\x16" and len(message) > 5:  # a record header: strip it
            message = message[5:]
        try:
            return cls._parse_dpkt(message)
        except Exception:
            return cls._parse_scapy(message)

    @classmethod
    def _parse_dpkt(cls, message: bytes) -> ClientHello:
        from dpkt import ssl as dpkt_ssl
        from dpkt.ssl_ciphersuites import BY_CODE

        hello = dpkt_ssl.TLSHandshake(message).data
        if not isinstance(hello, dpkt_ssl.TLSClientHello):
            raise ValueError("not a ClientHello")
        versions: tuple[str, ...] = ()
        sni = None
        for kind, data in getattr(hello, "extensions", ()):
            if kind == _SUPPORTED_VERSIONS and data:
                codes = (int.from_bytes(data[i:i + 2], "big") for i in range(1, 1 + data[0] - 1, 2))
                versions = tuple(TLS_WIRE_CODES[v] for v in codes if v in TLS_WIRE_CODES)
            elif kind == _SERVER_NAME and len(data) >= 5 and data[2] == 0:  # the first name, a host name
                sni = data[5:5 + int.from_bytes(data[3:5], "big")].decode("ascii", "replace")
        legacy = TLS_WIRE_CODES.get(hello.version, f"0x{hello.version:04x}")
        suites = tuple(_SUITE_NAMES.get(c.code) or (BY_CODE[c.code].name if c.code in BY_CODE else f"0x{c.code:04x}")
                       for c in hello.ciphersuites)
        return cls(legacy, versions or (legacy,), suites, sni)

    @classmethod
    def _parse_scapy(cls, message: bytes) -> ClientHello:
        from scapy.layers.tls.crypto.suites import _tls_cipher_suites
        from scapy.layers.tls.extensions import TLS_Ext_ServerName, TLS_Ext_SupportedVersion_CH
        from scapy.layers.tls.handshake import TLSClientHello

        hello = TLSClientHello(message)
        versions: tuple[str, ...] = ()
        sni = None
        for ext in hello.ext or []:
            if isinstance(ext, TLS_Ext_SupportedVersion_CH):
                versions = tuple(TLS_WIRE_CODES.get(v, f"0x{v:04x}") for v in ext.versions
                                 if v in TLS_WIRE_CODES)
            elif isinstance(ext, TLS_Ext_ServerName) and ext.servernames:
                sni = ext.servernames[0].servername.decode("ascii", "replace")
        legacy = TLS_WIRE_CODES.get(hello.version, f"0x{hello.version:04x}")
        suites = tuple(_tls_cipher_suites.get(c, f"0x{c:04x}") for c in hello.ciphers or [])
        return cls(legacy, versions or (legacy,), suites, sni)


_SERVER_NAME, _SUPPORTED_VERSIONS = 0, 43  # extension numbers (RFC 6066, RFC 8446)
# the signalling suites by their IANA names (dpkt shortens them)
_SUITE_NAMES = {0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV", 0x5600: "TLS_FALLBACK_SCSV"}


def read_hello(event: ClientHelloSeen) -> ClientHelloSeen:
    """A ClientHello the edge kept as sent, taken apart (scapy): what it offered. Done by whoever
    reads it, never on the edge's loop while it serves."""
    if event.raw is None or event.versions or event.unparsed is not None:
        return event
    raw = base64.b64decode(event.raw)
    try:
        hello = ClientHello.parse(raw)
    except Exception as exc:  # a ClientHello scapy cannot read is still a fact worth keeping
        return msgspec.structs.replace(event, raw=None, unparsed=raw[:64].hex(), error=repr(exc))
    return msgspec.structs.replace(event, raw=None, legacy_version=hello.legacy_version, versions=hello.versions,
                                   cipher_suites=hello.cipher_suites, sni=hello.sni,
                                   highest_version=hello.highest_version)


def kept_hello(raw: bytes, implicit_tls: bool = False) -> ClientHelloSeen:
    """A ClientHello as the edge records it: as sent, for ``read_hello``."""
    return ClientHelloSeen(raw=base64.b64encode(raw[:MAX_HELLO]).decode(), implicit_tls=implicit_tls)


MAX_HELLO = 3072  # octets of a ClientHello kept (one with a post-quantum key share is about 1,900)


def certificate_names(peer_cert: dict[str, Any] | None) -> tuple[str, ...]:
    """CN and DNS SANs of a verified peer certificate as ``SSLObject.getpeercert()`` gives it."""
    if not peer_cert:
        return ()
    names: list[str] = []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
    for kind, value in peer_cert.get("subjectAltName", ()):
        if kind == "DNS" and value not in names:
            names.append(value)
    return tuple(names)
