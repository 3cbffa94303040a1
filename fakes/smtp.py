"""The SMTP adapter: an asyncio protocol that moves bytes between a socket and ``fakes.exo``.

``SmtpConnection`` feeds what arrives to the sans-IO framer (``fakes.exo.wire``), hands each
wire event to the session (``fakes.exo.session``), records both, and writes the decision:
replies in order (pipelined commands are answered one by one, in one write per batch), a
stored message before its 250, TLS when told (its own ``ssl.SSLObject`` over memory BIOs, so
the ClientHello of a failed handshake is kept too), and a close when told. A client that
half-closes still gets every reply it is owed. Bytes pipelined after STARTTLS are discarded
(RFC 3207 5). No exception reaches a client as anything but ``451 4.3.0``: the fault is recorded
and the run that owns the edge reports it as a harness ERROR.

``SmtpListener`` owns one listening socket (port 0 by default), stops idempotently and closes
its connections. Port 465's trap is ``fakes.trap``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import traceback

from fakes.exo import replies as R
from fakes.exo import session as S
from fakes.exo.commands import command_fact, escaped
from fakes.exo.errors import InternalError
from fakes.exo.events import Acceptance, AuthLine, Closed, Decision, TimedOut, TlsEstablished
from fakes.exo.names import Endpoint
from fakes.exo.observed import (
    Abandoned,
    AuthResponse,
    Command,
    Copy,
    Discarded,
    Disconnect,
    HarnessFault,
    ReplySent,
    Stored,
    Tls,
    TlsFailed,
)
from fakes.exo.secrets import looks_like_a_secret
from fakes.exo.state import EdgeState
from fakes.exo.wire import ChunkStart, Framer, Line, LineTooLong, NeedData, WireEvent
from fakes.gate import descriptor_plan
from fakes.record import REDACTED, HeldRecord, RecordLog, redact_command
from fakes.store import MailStore
from fakes.tls import MAX_HELLO, certificate_names, hello_message, kept_hello

log = logging.getLogger(__name__)

# Stop reading from a client while this much is buffered and not yet handled (its commands
# wait for a store, a TLS handshake or an injected delay).
HIGH_WATER = 4 * 1024 * 1024


class SmtpConnection(asyncio.Protocol):
    """One connection to the edge."""

    def __init__(self, listener: SmtpListener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.session: S.Session | None = None
        self.rec: HeldRecord | None = None  # committed to the log before each write and each wait
        self._wake = asyncio.Event()
        self._out: list[bytes] = []
        self._eof = False
        self._lost = False
        self._closing = False
        self._timed_out = False
        self._paused = False
        self._activity = self._started = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        # while the task waits for input, input is answered in data_received itself (one wake-up
        # of the task less per command); what needs waiting for is left to the task
        self._parked = False
        self._pending: Decision | None = None
        self._storing: Decision | None = None  # a message the store has, its 250 owed (nothing is answered meanwhile)
        self._fault: Exception | None = None
        self._secrets: set[str] = set()
        # TLS, once STARTTLS is under way
        self._tls: ssl.SSLObject | None = None
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._hello = bytearray()
        self._handshake: asyncio.Future[None] | None = None

    # -- the transport's callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise InternalError("expected isinstance(transport, asyncio.Transport)")
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        listener = self.listener
        self.session = S.Session(listener.state, listener.endpoint, peer[0])
        rec = listener.records.open_session(listener.endpoint, peer, local, session_id=self.session.id, held=True)
        if not isinstance(rec, HeldRecord):
            raise InternalError("expected a held record")
        self.rec = rec
        listener.connections.add(self)
        listener.store.expect_mail()  # its writer is started now, not when the first message waits for it
        self._arm_timer()
        self._task = self.loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._activity = self.loop.time()
        if self._tls is not None:
            data = self._tls_receive(data)
        if data:
            self.framer.receive(data)
            if self.framer.buffered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            if self._storing is not None:
                return  # answered once the message is on disk (``_stored``)
            if self._parked:
                if self._answered_here():
                    return  # the task waits on for more input
                self._parked = False  # the task takes over: nothing more is answered here before it has
        self._wake.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._fail_handshake(ConnectionResetError("the client closed during the TLS handshake"))
        self._wake.set()
        return True  # keep the transport open: the client is still owed its replies

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._fail_handshake(exc or ConnectionResetError("connection lost"))
        self._wake.set()

    def abort(self) -> asyncio.Task[None] | None:
        """Drop the connection (the edge is stopping); returns the task that winds it up."""
        if self.transport is not None:
            self.transport.abort()
        return self._task

    # -- serving ----------------------------------------------------------------------------------

    async def _serve(self) -> None:
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        try:
            await self._apply(self.session.greeting())
            while not self._closing and not self._lost:
                if self._storing is not None:  # woken (a hang-up, a timeout) while the store works
                    self._wake.clear()
                    await self._wake.wait()  # ``_stored`` wakes it
                    continue
                if self._fault is not None:  # raised while input was answered in data_received
                    fault, self._fault = self._fault, None
                    raise fault
                if self._pending is not None:  # a decision data_received left: it needs waiting for
                    decision, self._pending = self._pending, None
                    await self._apply(decision)
                    continue
                if self._timed_out:  # idle too long, or the session's overall time is up
                    await self._apply(self.session.handle(TimedOut()))
                    break
                event = self.framer.next_event()
                if isinstance(event, NeedData):
                    if self._eof:
                        break
                    self._await_input()
                    self._wake.clear()
                    self._parked = True
                    try:
                        await self._wake.wait()
                    finally:
                        self._parked = False
                    continue
                decision = self.session.receive(event)
                self._record_input(event)  # as the session read it (a command, or an answer to its 334)
                await self._apply(decision)
        except Exception as exc:  # the edge failed, not the client: say 451 4.3.0 and end
            self.rec.add(HarnessFault(error=repr(exc), traceback=traceback.format_exc()))
            log.exception("edge fault in session %s", self.session.id)
            self._write((R.HARNESS_FAULT.render(self.session.context()),), R.HARNESS_FAULT)
        finally:
            self._finish()

    def _answered_here(self) -> bool:
        """Answer what has come in, in the transport's callback, while the serving task waits for
        input and no answer needs waiting for (a store, a handshake, a pause); True when all was
        answered and the task may wait on, False when it is to take over."""
        if self.session is None:
            raise InternalError("expected self.session is not None")
        try:
            while not (self._closing or self._lost or self._timed_out):
                event = self.framer.next_event()
                if isinstance(event, NeedData):
                    if self._eof:
                        return False
                    self._await_input()
                    return True
                decision = self.session.receive(event)
                self._record_input(event)
                if decision.accepted is not None and not (decision.delay or decision.start_tls):
                    self._store_then_answer(decision)
                    return True  # the task waits on; ``_stored`` answers the rest
                if decision.delay or decision.accepted is not None or decision.start_tls:
                    self._pending = decision
                    return False
                self._apply_now(decision, decision.lines)
        except Exception as exc:  # the task reports it, as it does its own
            self._fault = exc
        return False

    def _await_input(self) -> None:
        """All input is answered: out go the replies, and reading resumes if it was paused."""
        self._flush()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _record_input(self, event: WireEvent) -> None:
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        if isinstance(event, Line):
            parsed = self.session.parsed
            if parsed is None:
                raise InternalError("a line the session did not read")
            if isinstance(parsed, AuthLine):
                self.rec.add(AuthResponse(line=REDACTED))
                return
            line = escaped(event.raw)
            if looks_like_a_secret(line):
                # a client that lost track of an AUTH exchange sends its credentials as "commands";
                # Exchange echoes them in the 500, but the records never keep them
                self._secrets.add(line.split(" ", 1)[0])
                self.rec.add(Command(line=REDACTED))
                return
            self.rec.add(command_fact(redact_command(line), parsed))
        elif isinstance(event, ChunkStart):
            self.rec.add(Command(line=escaped(event.raw), verb="BDAT"))
        elif isinstance(event, LineTooLong):
            self.rec.add(Command(line=f"<a line of {event.size} octets>"))

    async def _apply(self, decision: Decision) -> None:
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        if not (decision.delay or decision.accepted is not None or decision.start_tls):
            self._apply_now(decision, decision.lines)
            return
        for note in decision.notes:
            self.rec.add(note)
        lines = decision.lines
        if decision.delay:
            self._flush()
            eof_before = self._eof
            await asyncio.sleep(decision.delay)  # a timer: the loop serves everyone else meanwhile
            # the client hung up while it waited, with nothing more to say (no QUIT pipelined behind)
            left = self._lost or (self._eof and not eof_before and not self.framer.buffered)
            if left and lines:
                self.rec.add(Abandoned(line=lines[0], waited=decision.delay))
                self._lost = True
                return
        if decision.accepted is not None:
            self._flush()  # the replies before it are not held back while the store works
            if not await self._store(decision.accepted):
                lines = (R.HARNESS_FAULT.render(self.session.context()),)
        self._apply_now(decision, lines, notes=False)
        if decision.start_tls:
            await self._start_tls()

    def _apply_now(self, decision: Decision, lines: tuple[str, ...], *, notes: bool = True) -> None:
        """What a decision does that needs no waiting: its notes, its reply (``lines``: the one
        decided, or the 451 that replaced it), the message's octets to come, the end."""
        if self.rec is None:
            raise InternalError("expected self.rec is not None")
        if notes:
            for note in decision.notes:
                self.rec.add(note)
        if lines:
            self._write(lines, decision.reply if lines is decision.lines else R.HARNESS_FAULT)
        if decision.read_data:
            self.framer.start_data()
        if decision.close:
            self._closing = True

    async def _store(self, accepted: Acceptance) -> bool:
        """Put every copy on disk; True once they are there (and their record written)."""
        if self.session is None:
            raise InternalError("expected self.session is not None")
        listener, done = self.listener, self.loop.create_future()

        def settle(outcome: list[str] | BaseException) -> None:
            if not done.done():  # not cancelled (the edge stopping)
                done.set_result(outcome)

        listener.store.stored(accepted, session=self.session.id, endpoint=listener.endpoint,
                              now=listener.state.clock(), then=settle)
        return self._kept(accepted, await done)

    def _store_then_answer(self, decision: Decision) -> None:
        """Hand the message to the store and answer it (and what came after it) once it is on
        disk, in ``_stored``: no wake-up of the task on the way."""
        if self.session is None or self.rec is None or decision.accepted is None:
            raise InternalError("expected a session, a record and a message")
        for note in decision.notes:
            self.rec.add(note)
        self._flush()  # the replies before it are not held back while the store works
        self._storing = decision
        listener = self.listener
        listener.store.stored(decision.accepted, session=self.session.id, endpoint=listener.endpoint,
                              now=listener.state.clock(), then=self._stored)

    def _stored(self, outcome: list[str] | BaseException) -> None:
        """The store's word on the message ``_store_then_answer`` handed it: its 250 (or 451), then
        the input that came meanwhile, here while the task waits for input, else by the task."""
        decision, self._storing = self._storing, None
        if decision is None or decision.accepted is None or self.session is None:
            raise InternalError("expected a message being stored")
        try:
            lines = decision.lines if self._kept(decision.accepted, outcome) else (
                R.HARNESS_FAULT.render(self.session.context()),)
            self._apply_now(decision, lines, notes=False)
            if self._parked and self._answered_here():
                return
        except Exception as exc:  # the task reports it, as it does its own
            self._fault = exc
        self._parked = False
        self._wake.set()

    def _kept(self, accepted: Acceptance, outcome: list[str] | BaseException) -> bool:
        """Record what the store did with a message: True when it is on disk."""
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        if isinstance(outcome, BaseException):  # the store failed: the sender must not be told 250
            self.rec.add(HarnessFault(error=repr(outcome), traceback="".join(
                traceback.format_exception(type(outcome), outcome, outcome.__traceback__))))
            return False
        self.rec.add(Stored(
            message_id=accepted.message_id, mail_from=accepted.mail_from, recipients=accepted.recipients,
            delayed=accepted.delayed, copies=tuple(outcome),
            folders=tuple(Copy(d.folder, d.mailbox, d.recipient, d.deliver_after) for d in accepted.deliveries),
        ))
        if self.listener.state.on_stored is not None:
            self.listener.state.on_stored()
        return True

    # -- output -------------------------------------------------------------------------------------

    def _write(self, lines: tuple[str, ...], reply: R.Reply | None = None) -> None:
        """Queue reply lines for the client; record each with the stage it answers and, when it
        is one reply of the catalog, its name and enhanced code (read back as they are, never
        parsed out of the text)."""
        if self.rec is None or self.session is None:
            raise InternalError("expected self.rec is not None and self.session is not None")
        stage = self.session.stage
        for line in lines:
            shown = line
            for secret in self._secrets:
                shown = shown.replace(secret, REDACTED)
            last = line[3:4] != "-"
            self.rec.add(ReplySent(line=shown, code=int(line[:3]), stage=stage,
                                   name=R.name_of(reply) if last else None,
                                   enhanced=reply.enhanced if reply is not None and last else None))
            self._out.append(line.encode("utf-8", "backslashreplace") + b"\r\n")

    def _flush(self) -> None:
        """The events so far to the log, then the replies so far to the client: called before
        every wait of the connection's, so nothing it did waits unrecorded."""
        if self.rec is not None:
            self.rec.commit()
        if not self._out or self.transport is None or self.transport.is_closing():
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._tls is not None:
            try:
                self._tls.write(data)
            except ssl.SSLError:
                return
            data = self._tls_out.read()
        self.transport.write(data)

    def _finish(self) -> None:
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        self._flush()
        if self._tls is not None and self._handshake is not None and self._handshake.done() \
                and not self._handshake.exception() and not self._lost:
            with contextlib.suppress(ssl.SSLError, ValueError):
                self._tls.unwrap()  # close_notify; the client's own is not waited for
            self._tls_send()
        if self.transport is not None:
            self.transport.close()
        if self._timer is not None:
            self._timer.cancel()
        self.session.handle(Closed())
        self.rec.add(Disconnect(error=None if not self._lost or self._closing else "connection lost"))
        self.rec.commit()
        self.listener.connections.discard(self)

    # -- idle timer ---------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        ends = min(self._activity + self.listener.idle_timeout, self._started + self.listener.session_limit)
        self._timer = self.loop.call_at(ends, self._check_idle)

    def _check_idle(self) -> None:
        now = self.loop.time()
        if now < self._activity + self.listener.idle_timeout and now < self._started + self.listener.session_limit:
            self._arm_timer()  # traffic came since: wait for the rest of the timeout
            return
        self._timed_out = True
        self._fail_handshake(TimeoutError("the TLS handshake did not complete in time"))
        self._wake.set()

    # -- TLS ------------------------------------------------------------------------------------------

    async def _start_tls(self) -> None:
        if self.session is None or self.rec is None:
            raise InternalError("expected self.session is not None and self.rec is not None")
        dropped = self.framer.discard()  # sent before the client could have seen the 220
        if dropped:
            self.rec.add(Discarded(octets=dropped, reason="sent after STARTTLS, before the handshake"))
        self._flush()  # the 220 goes out in the clear
        context = self.listener.tls_context
        if context is None:
            raise InternalError(f"no TLS context on the {self.listener.endpoint} endpoint")
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        self._hello = bytearray()  # the first octets of the handshake, for the ClientHello as sent
        self._handshake = self.loop.create_future()
        try:
            await self._handshake
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self._record_client_hello()
            self.rec.add(TlsFailed(reason=_tls_reason(exc)))
            self._tls = None
            self._closing = True
            return
        self._record_client_hello()
        tls = self._tls
        version = tls.version() or ""
        cipher = (tls.cipher() or ("",))[0]
        names = certificate_names(tls.getpeercert())
        self.rec.add(Tls(version=version, cipher=cipher, client_certificate=tuple(names) or None))
        await self._apply(self.session.handle(TlsEstablished(version, cipher, names)))

    def _tls_receive(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out (nothing while the handshake runs)."""
        if self._tls is None or self._handshake is None:
            raise InternalError("expected self._tls is not None and self._handshake is not None")
        self._tls_in.write(data)
        if not self._handshake.done():
            if len(self._hello) < MAX_HELLO + 64:
                self._hello += data[:MAX_HELLO + 64 - len(self._hello)]
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                self._tls_send()
                return b""
            except (ssl.SSLError, OSError, ValueError) as exc:
                self._tls_send()  # the alert
                self._fail_handshake(exc if isinstance(exc, ssl.SSLError) else ssl.SSLError(str(exc)))
                return b""
            self._tls_send()
            self._handshake.set_result(None)
        pieces = []
        while True:
            try:
                piece = self._tls.read(256 * 1024)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                self._eof = True  # a broken record: nothing more will be read
                break
            if not piece:  # the client's close_notify (RFC 8446 6.1): its input ends; ours is sent at the end
                self._eof = True
                break
            pieces.append(piece)
            if not self._tls_in.pending and not self._tls.pending():
                break  # all read: another read would only say so (SSLWantReadError)
        self._tls_send()
        return b"".join(pieces)

    def _tls_send(self) -> None:
        data = self._tls_out.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail_handshake(self, exc: BaseException) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(exc)

    def _record_client_hello(self) -> None:
        if self.rec is None:
            raise InternalError("expected self.rec is not None")
        raw = hello_message(bytes(self._hello))
        self._hello = bytearray()
        if raw:
            self.rec.add(kept_hello(raw))  # taken apart by whoever reads it, never here


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return getattr(cause, "reason", None) or str(cause) or type(cause).__name__


class Listening:
    """Owns one listening socket; ``stop`` closes it and may be called any number of times."""

    server: asyncio.Server | None = None

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
            await server.wait_closed()


# A session's overall time, however busy: Exchange's receive connectors have one (ConnectionTimeout).
# Exchange Online's is not published; a public MX transcript timed out after 20:55 of session, so
# it is longer than that (UNCONFIRMED: 30 minutes here). Slow senders cannot hold connections forever.
SESSION_LIMIT = 1800.0


class SmtpListener(Listening):
    """One endpoint of the edge on one socket."""

    def __init__(self, *, endpoint: Endpoint, state: EdgeState, records: RecordLog,
                 store: MailStore, tls_context: ssl.SSLContext | None, idle_timeout: float = 300,
                 session_limit: float = SESSION_LIMIT) -> None:
        self.endpoint = endpoint
        self.state = state
        self.records = records
        self.store = store
        self.tls_context = tls_context
        self.idle_timeout = idle_timeout
        self.session_limit = session_limit
        self.server: asyncio.Server | None = None
        self.connections: set[SmtpConnection] = set()

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        # never accept more connections than there are file descriptors for: past that, accept()
        # fails in a loop; below it, the one too many hears 421 4.3.2
        budget, backlog = descriptor_plan()
        if budget is not None:
            self.state.max_connections = min(self.state.max_connections, budget)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SmtpConnection(self), host, port, backlog=backlog)
        return self.server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        await super().stop()
        ending = [connection.abort() for connection in list(self.connections)]
        await asyncio.gather(*(task for task in ending if task is not None), return_exceptions=True)
