"""aiosmtpd on real sockets, every decision delegated to the sans-IO session (``fakes.exo``).

``EdgeProtocol`` keeps aiosmtpd's connection loop and its STARTTLS upgrade, and replaces each
command handler with one that turns the command into an event for ``fakes.exo.session``, writes
the decision, records both, stores accepted mail before the 250 goes out, and closes when told.
No exception reaches a client as aiosmtpd's ``500 Error: (Type)``: the fault is recorded and
the client hears ``451 4.3.0``; the run that owns the edge reports it as a harness ERROR.

``SmtpListener`` owns one listening socket (port 0 by default) and stops idempotently.
``ImplicitTlsTrap`` is port 465: it records the ClientHello a device sends there and closes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
import traceback
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, TLSSetupException

from fakes.exo import replies as R
from fakes.exo import session as S
from fakes.exo.message import message_facts
from fakes.record import REDACTED, RecordLog, SessionRecord
from fakes.store import MailStore
from fakes.tls import ClientHello, certificate_names, client_hello_bytes

log = logging.getLogger(__name__)

_PATH = re.compile(r"^(?P<kw>FROM|TO)\s*:\s*(?P<addr><[^>]*>|[^\s<>]+)\s*(?P<params>.*)$", re.I)
# aiosmtpd's own fixed replies that can still reach the wire, put into Exchange's words.
_AIOSMTPD_TEXTS = {"500 Error: bad syntax": "UNRECOGNIZED"}


def parse_path(keyword: str, arg: str | None) -> tuple[str, tuple[tuple[str, str | None], ...]] | None:
    """``FROM:<a@b> SIZE=10`` -> ``("a@b", (("SIZE", "10"),))``; None when malformed."""
    match = _PATH.match(arg or "")
    if not match or match["kw"].upper() != keyword:
        return None
    address = match["addr"].strip("<>")
    params = []
    for word in match["params"].split():
        key, sep, value = word.partition("=")
        params.append((key.upper(), value if sep else None))
    return address, tuple(params)


class EdgeProtocol(SMTP):
    """One connection to the edge."""

    # XOAUTH2 lines carry a whole JWT (1-2 KB and more); Exchange takes them in one line.
    line_length_limit = 64 * 1024
    command_size_limit = 64 * 1024
    command_size_limits: dict[str, int] = collections.defaultdict(lambda: 64 * 1024)

    def __init__(self, listener: SmtpListener) -> None:
        self.listener = listener
        super().__init__(
            handler=None,
            hostname="edge",
            tls_context=listener.tls_context,
            require_starttls=False,
            auth_required=False,
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=None,
            timeout=listener.idle_timeout,
        )
        self.exo: S.Session | None = None
        self.rec: SessionRecord | None = None
        self._pending_starttls: str | None = None
        self._closed_recorded = False
        self._secrets: set[str] = set()
        self._smtp_methods = _Commands(self._smtp_methods, self.unknown_command)

    # -- connection lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.exo is None:
            peer = transport.get_extra_info("peername") or ("?", 0)
            local = transport.get_extra_info("sockname") or ("?", 0)
            self.exo = S.Session(self.listener.state, self.listener.endpoint, peer[0])
            self.rec = self.listener.records.open_session(self.listener.endpoint, peer, local,
                                                          session_id=self.exo.id)
            greeting = self.exo.greeting().lines[0]
            _code, host, ident = greeting.split(" ", 2)
            self.hostname, self.__ident__ = host, ident
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._closed_recorded and self.exo is not None and self.rec is not None:
            self._closed_recorded = True
            self.exo.handle(S.Closed())
            self.rec.event("disconnect", error=None if error is None else repr(error))
        super().connection_lost(error)

    async def push(self, status: str | bytes) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        if self._pending_starttls is not None and text == "220 Ready to start TLS":
            text, self._pending_starttls = self._pending_starttls, None
        elif text in _AIOSMTPD_TEXTS:
            text = R.UNRECOGNIZED_COMMAND.render(self.exo.context() if self.exo else None, command="")
        if self.rec is not None:
            recorded = text
            for secret in self._secrets:
                recorded = recorded.replace(secret, REDACTED)
            self.rec.replies(recorded.split("\r\n"))
        await super().push(text)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            return R.HARNESS_FAULT.render()  # written to a closed transport; nothing reads it
        if self.rec is not None:
            self.rec.event("harness_fault", error=repr(error), traceback=traceback.format_exc())
        log.exception("edge fault in session %s", self.exo.id if self.exo else "?")
        return R.HARNESS_FAULT.render(self.exo.context() if self.exo else None)

    # -- applying decisions -----------------------------------------------------------------

    def _note(self, decision: S.Decision) -> None:
        assert self.rec is not None
        for kind, note in decision.notes.items():
            self.rec.event(kind, **note) if isinstance(note, dict) else self.rec.event(kind, value=note)

    async def _apply(self, decision: S.Decision) -> None:
        self._note(decision)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.lines:
            await self.push("\r\n".join(decision.lines))
        if decision.close and self.transport is not None:
            self.transport.close()

    async def _event(self, event: S.Event, line: str) -> S.Decision:
        assert self.exo is not None and self.rec is not None
        self.rec.command(line)
        decision = self.exo.handle(event)
        await self._apply(decision)
        return decision

    # -- commands ---------------------------------------------------------------------------

    async def smtp_EHLO(self, arg: str | None) -> None:
        assert self.session is not None
        self.session.host_name = arg or ""
        self.session.extended_smtp = True
        await self._event(S.Hello("EHLO", arg or ""), f"EHLO {arg or ''}".strip())

    async def smtp_HELO(self, arg: str | None) -> None:
        await self._event(S.Hello("HELO", arg or ""), f"HELO {arg or ''}".strip())

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self._event(S.Noop(), "NOOP")

    async def smtp_RSET(self, arg: str | None) -> None:
        await self._event(S.Reset(), "RSET")

    async def smtp_QUIT(self, arg: str | None) -> None:
        await self._event(S.Quit(), "QUIT")

    async def unknown_command(self, verb: str, arg: str | None) -> None:
        line = f"{verb} {arg}" if arg else verb
        if _looks_like_a_secret(line):
            # a client that lost track of an AUTH exchange sends its credentials as "commands";
            # Exchange echoes them in the 500, but the records never keep them
            self._secrets.add(verb)
            line = REDACTED
        await self._event(S.Unknown(verb), line)

    async def smtp_MAIL(self, arg: str | None) -> None:
        parsed = parse_path("FROM", arg)
        line = f"MAIL {arg or ''}".strip()
        if parsed is None:
            await self._event(S.MailFrom("<malformed>"), line)
            return
        await self._event(S.MailFrom(*parsed), line)

    async def smtp_RCPT(self, arg: str | None) -> None:
        parsed = parse_path("TO", arg)
        line = f"RCPT {arg or ''}".strip()
        await self._event(S.RcptTo(*parsed) if parsed else S.RcptTo("<malformed>"), line)

    async def smtp_AUTH(self, arg: str | None) -> None:
        words = (arg or "").split()
        mechanism = words[0] if words else ""
        initial = words[1] if len(words) > 1 else None
        decision = await self._event(S.Auth(mechanism, initial), f"AUTH {arg or ''}".strip())
        while decision.code == 334 and self.transport is not None:
            raw = await self._reader.readline()
            if not raw:
                return
            assert self.exo is not None and self.rec is not None
            self.rec.event("auth_response", line=REDACTED)
            decision = self.exo.handle(S.AuthLine(raw.decode("utf-8", "replace").rstrip("\r\n")))
            await self._apply(decision)

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        assert self.exo is not None and self.rec is not None
        if arg:
            await self._event(S.Unknown("STARTTLS"), f"STARTTLS {arg}")
            return
        self.rec.command("STARTTLS")
        decision = self.exo.handle(S.StartTls())
        if not decision.start_tls:
            await self._apply(decision)
            return
        self._note(decision)
        # aiosmtpd's upgrade writes its own 220 line; push() puts Exchange's words in its place.
        self._pending_starttls = decision.lines[0]
        try:
            await super().smtp_STARTTLS("")
        except TLSSetupException as exc:
            sslobj = getattr(self._tls_protocol, "_sslobj", None)
            self._record_client_hello(sslobj)
            self.rec.event("tls_failed", reason=_tls_reason(exc))
            raise
        sslobj = self.transport.get_extra_info("ssl_object") if self.transport else None
        self._record_client_hello(sslobj)
        version = sslobj.version() if sslobj else None
        cipher = sslobj.cipher()[0] if sslobj and sslobj.cipher() else ""
        names = certificate_names(sslobj.getpeercert() if sslobj else None)
        self.rec.event("tls", version=version, cipher=cipher, client_certificate=list(names) or None)
        await self._apply(self.exo.handle(S.TlsEstablished(version or "", cipher, names)))

    def _record_client_hello(self, sslobj: Any) -> None:
        assert self.rec is not None
        raw = client_hello_bytes(sslobj) if sslobj is not None else None
        if raw:
            self.rec.event("client_hello", **_parse_hello(raw))

    async def smtp_DATA(self, arg: str | None) -> None:
        decision = await self._event(S.Data(), "DATA")
        if decision.code != 354:
            return
        content, size = await self._read_body(self.listener.state.tenant.limits.max_message_size)
        if content is None:
            return
        assert self.exo is not None and self.rec is not None
        self.rec.event("message", size=size, **message_facts(content))
        decision = self.exo.handle(S.MessageBody(content, size))
        if decision.accepted is not None:
            try:
                ids = await asyncio.to_thread(
                    self.listener.store.deliver, decision.accepted, session=self.exo.id,
                    endpoint=self.listener.endpoint, now=self.listener.state.clock(),
                )
            except Exception as exc:  # the store failed: the sender must not be told 250
                self.rec.event("harness_fault", error=repr(exc), traceback=traceback.format_exc())
                await self.push(R.HARNESS_FAULT.render(self.exo.context()))
                return
            accepted = decision.accepted
            self.rec.event(
                "stored", message_id=accepted.message_id, mail_from=accepted.mail_from,
                recipients=list(accepted.recipients), delayed=accepted.delayed, copies=ids,
                folders=[[d.folder, d.mailbox, d.recipient, d.deliver_after] for d in accepted.deliveries],
            )
        await self._apply(decision)

    async def _read_body(self, limit: int) -> tuple[bytes | None, int]:
        """Read to the lone dot; keep at most ``limit`` + 1 bytes but count them all."""
        chunks: list[bytes] = []
        kept = size = 0
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                line = await self._reader.read(exc.consumed)
            except asyncio.IncompleteReadError:
                return None, size
            if line == b".\r\n":
                return b"".join(chunks), size
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if kept <= limit:
                chunks.append(line)
                kept += len(line)
        return None, size


class _Commands(dict[str, Any]):
    """aiosmtpd's command table, where every verb it does not know goes to ``unknown``."""

    CORE = frozenset({"EHLO", "HELO", "NOOP", "RSET", "QUIT", "MAIL", "RCPT", "DATA", "AUTH",
                      "STARTTLS"})

    def __init__(self, methods: dict[str, Any], unknown: Callable[..., Any]) -> None:
        super().__init__({k: v for k, v in methods.items() if k in self.CORE})
        self._unknown = unknown

    def get(self, verb: str, default: Any = None) -> Any:
        method = super().get(verb)
        if method is not None:
            return method
        return lambda arg: self._unknown(verb, arg)


_BASE64_TOKEN = re.compile(r"^[A-Za-z0-9+/]{6,}={0,2}$")


def _looks_like_a_secret(line: str) -> bool:
    """A lone base64 token (not a plain word): what AUTH LOGIN or XOAUTH2 data looks like."""
    return bool(_BASE64_TOKEN.match(line)) and not line.isalpha()


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return getattr(cause, "reason", None) or str(cause) or type(cause).__name__


def _parse_hello(raw: bytes) -> dict[str, Any]:
    try:
        return ClientHello.parse(raw).as_dict()
    except Exception as exc:  # a ClientHello scapy cannot read is still a fact worth keeping
        return {"unparsed": raw[:64].hex(), "error": repr(exc)}


class _Listening:
    """Owns one listening socket; ``stop`` closes it and may be called any number of times."""

    server: asyncio.Server | None = None

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
            await server.wait_closed()


class SmtpListener(_Listening):
    """One endpoint of the edge on one socket."""

    def __init__(self, *, endpoint: S.Endpoint, state: S.EdgeState, records: RecordLog,
                 store: MailStore, tls_context: ssl.SSLContext | None, idle_timeout: float = 300) -> None:
        self.endpoint = endpoint
        self.state = state
        self.records = records
        self.store = store
        self.tls_context = tls_context
        self.idle_timeout = idle_timeout
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: EdgeProtocol(self), host, port)
        return self.server.sockets[0].getsockname()[:2]



class ImplicitTlsTrap(_Listening):
    """Port 465: smtp.office365.com serves nothing there. Record what the client tried, close."""

    endpoint = "implicit-tls"

    def __init__(self, records: RecordLog, wait: float = 5.0) -> None:
        self.records = records
        self.wait = wait
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rec = self.records.open_session(self.endpoint, writer.get_extra_info("peername"),
                                        writer.get_extra_info("sockname"))
        try:
            data = await asyncio.wait_for(_read_record(reader), self.wait)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            data = b""
        if data[:1] == b"\x16":
            rec.event("client_hello", implicit_tls=True, **_parse_hello(data))
        elif data:
            rec.event("plaintext", first_bytes=data[:64].decode("latin-1"))
        else:
            rec.event("silent", waited=self.wait)
        writer.close()
        rec.event("disconnect", error=None)

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, host, port)
        return self.server.sockets[0].getsockname()[:2]


async def _read_record(reader: asyncio.StreamReader) -> bytes:
    """One TLS record (header and body), or whatever plaintext the client sent first."""
    head = await reader.read(5)
    if head[:1] != b"\x16" or len(head) < 5:
        return head
    length = int.from_bytes(head[3:5], "big")
    return head + await reader.readexactly(length)
