"""The whole simulated edge for one tenant: every endpoint, the records, the store, the CA.

``Edge(tenant, state_dir=...)`` starts with ``await edge.start()`` and stops with
``await edge.stop()`` (idempotent). ``EdgeThread(edge)`` runs it on a loop of its own for
synchronous callers: tests, the pytest plugin, the CLI. Nothing here blocks the loop: the
store is written by a process of its own, its pipes driven by the loop without blocking it.

Endpoints by name, each on an ephemeral port unless a port is given:
``submission`` (smtp.office365.com:587), ``submission-25`` (the same on 25),
``legacy`` (smtp-legacy.office365.com:587), ``implicit-tls`` (the 465 trap),
``mx`` (<tenant>.mail.protection.outlook.com:25, direct send and connector relay), ``identity``
(login.microsoftonline.com:443 and the device login page) and ``dns`` (the lab DNS server, UDP
and TCP on one port). Names, ports and host names live in ``fakes.exo.names``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.dns import DnsServer
from fakes.exo.errors import UsageError
from fakes.exo.events import Fault, MidRun
from fakes.exo.identity import IdentityPlatform
from fakes.exo.names import (
    ENDPOINT_HOSTNAMES,
    ENDPOINT_NAMES,
    IDENTITY_NAMES,
    MODERN_TLS_VERSIONS,
    SMTP_ENDPOINTS,
    SUBMISSION_NAMES,
)
from fakes.exo.observed import Observed
from fakes.exo.quota import QuotaLedger
from fakes.exo.secrets import SecretMask
from fakes.exo.spf import check_host
from fakes.exo.state import EdgeState
from fakes.exo.tenant import Tenant, default_tenant
from fakes.exo.tokens import TokenAuthority
from fakes.exo.zone import build_zone
from fakes.gate import AcceptErrors, DeferredEndpoint
from fakes.live import LiveSession, LiveSessions
from fakes.pki import SERVER_LEAVES
from fakes.record import FLUSH_INTERVAL, RecordLog
from fakes.smtp import SESSION_LIMIT, SmtpListener
from fakes.store import MailStore
from fakes.tls import LabCA, mx_versions, private_directory, server_context
from fakes.trap import ImplicitTlsTrap

SPF_REMEMBERED = 4096  # SPF results kept (address, domain): forgotten together when full


@dataclass(frozen=True)
class QuotaUse:
    """Use a mailbox has already made of its limits when a case starts."""

    mailbox: str
    recipients_today: int = 0
    messages_this_minute: int = 0


@dataclass(frozen=True)
class CaseSetup:
    """Everything one case changes at a running edge, applied at once by ``Edge.apply`` on the
    edge's loop: the tenant, quota already used, injected faults, the TLS offer and certificate,
    and what the service does mid-run."""

    tenant: Tenant
    quota: tuple[QuotaUse, ...] = ()
    faults: tuple[Fault, ...] = ()
    tls_versions: tuple[str, ...] | None = None
    certificate: str = "valid"
    during: tuple[MidRun, ...] = ()
    tarpit: float | None = None  # seconds an error reply waits; None: the edge's own setting


def tenant_guid(tenant: Tenant) -> str:
    """The tenant's id (a GUID, as Entra gives one): its own, or one derived from its name."""
    return tenant.guid


def advertised_address(host: str, advertise: str | None) -> str:
    """The address the lab DNS hands out for the edge's names: ``advertise``, else the bound
    address, which must then be one a device can reach (not 0.0.0.0 or ::)."""
    flag, value = ("--advertise", advertise) if advertise is not None else ("--host", host)
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an IP address") from None
    if address.is_unspecified:
        hint = "say which address devices are given with --advertise ADDRESS" if flag == "--host" \
            else "devices cannot connect to it"
        raise UsageError(f"{flag} {value} is every address of this host: {hint}")
    return str(address)


class Edge:
    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        state_dir: Path,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        idle_timeout: float = 300.0,
        session_limit: float = SESSION_LIMIT,
        tarpit: float = 0.0,
        advertise: str | None = None,
        keylog: Path | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        unknown = set(ports or {}) - set(ENDPOINT_NAMES)
        if unknown:
            raise UsageError(f"unknown endpoint name(s) {sorted(unknown)}; known: {list(ENDPOINT_NAMES)}")
        self.tenant = tenant or default_tenant()
        self.state_dir = private_directory(Path(state_dir).resolve())
        self.host = host
        self.advertise = advertised_address(host, advertise)
        # an endpoint's own address (smtp.office365.com, the MX, login.microsoftonline.com each on one
        # of their own, as in the service); the others, and the DNS server, on ``host``
        self.hosts = dict(hosts or {})
        unknown_hosts = set(self.hosts) - {"submission", "legacy", "mx", "identity"}
        if unknown_hosts:
            raise UsageError(f"an address of its own for {sorted(unknown_hosts)}: only submission (with its 25 "
                             "and 465), legacy, mx and identity have one")
        self.idle_timeout = idle_timeout  # seconds of silence before 421 4.4.1 (the MX's 5 minutes)
        self.session_limit = session_limit  # seconds a session may last in all, however busy
        self.tarpit = tarpit  # seconds an error reply waits (Exchange's 5 in the lab: exoedge serve)
        self.keylog = keylog  # the TLS key log (NSS format) every server context writes to, when asked
        self.ports = {name: 0 for name in ENDPOINT_NAMES} | (ports or {})
        self.rng = random.Random(seed)
        self._clock = clock
        self.clock_offset = 0.0  # seconds the service's clock was moved ahead (MidRun.advance_clock)
        clock = self.clock
        self.ca = LabCA.open(self.state_dir)
        self.tokens = TokenAuthority(self.ca.issuer_key, tenant_guid(self.tenant))
        # every password of the tenant and every token minted here is masked in what is written
        self.secrets = SecretMask()
        self.secrets.add(*(box.password for box in self.tenant.mailboxes), *(app.secret for app in self.tenant.apps))
        # what was seen, stamped with the wall clock (a scenario's clock jump is the service's, not the lab's)
        self.records = RecordLog(self.state_dir / "records.jsonl", clock=self._clock, mask=self.secrets.mask)
        self.store = MailStore(self.state_dir / "store")
        self.state = EdgeState(
            tenant=self.tenant,
            ledger=QuotaLedger(self.tenant.limits),
            clock=clock,
            new_id=lambda: f"{self.rng.getrandbits(64):016X}",
            tokens=self.tokens,
            machine=f"AM{self.rng.randint(0, 9)}PR{self.rng.randint(1, 9):02d}CA{self.rng.randint(0, 9999):04d}",
            mx_machine=f"AM{self.rng.randint(1, 9)}EUR0{self.rng.randint(1, 5)}FT0{self.rng.randint(10, 99)}",
            tarpit=tarpit,
        )
        self.state.spf = self.spf
        self.identity = IdentityPlatform(lambda: self.tenant, self.tokens, clock, draw=self.rng.randint)
        self.zone = build_zone(self.tenant, [self.advertise])
        self._spf_results: dict[tuple[str, str], str] = {}  # (address, domain): SPF's result in this zone
        self.dns: DnsServer | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self._servers: list[Any] = []
        self._tls_cache: dict[tuple[tuple[str, ...] | None, str], dict[bool, Any]] = {}
        self._started = False
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(AcceptErrors())  # out of descriptors: one line a minute, not a flood
        contexts = self._contexts()
        name = "?"
        try:
            for name, endpoint in SMTP_ENDPOINTS.items():
                listener = SmtpListener(endpoint=endpoint, state=self.state, records=self.records,
                                        store=self.store, tls_context=contexts[endpoint == "mx"],
                                        idle_timeout=self.idle_timeout, session_limit=self.session_limit)
                self.addresses[name] = await listener.start(self.bind_address(name), self.ports[name])
                self._servers.append(listener)
            name = "implicit-tls"
            trap = ImplicitTlsTrap(self.records, budget=self.state)
            self.addresses["implicit-tls"] = await trap.start(self.bind_address(name), self.ports["implicit-tls"])
            self._servers.append(trap)
            name = "identity"
            https = server_context(self.ca, leaf=self.ca.server_leaf("identity"), versions=MODERN_TLS_VERSIONS,
                                   keylog=self.keylog)
            identity = DeferredEndpoint("identity", lambda: _identity_server(self.identity, self.records, https),
                                        self.state, self.records, https)
            self.addresses["identity"] = await identity.start(self.bind_address(name), self.ports["identity"])
            bound, port = self.addresses["identity"]
            for address in (bound, self.advertise):  # a client assertion's audience may name them
                self.identity.hosts.add(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
            self._servers.append(identity)
            self._rebuild_zone()
            name = "dns"
            dns = DnsServer(lambda: self.zone, self.records, budget=self.state)
            self.addresses["dns"] = await dns.start(self.host, self.ports["dns"])
            self._servers.append(dns)
            self.dns = dns
            self._flusher = asyncio.get_running_loop().create_task(self._flush_records(), name="records-flush")
        except OSError as exc:
            await self.stop()
            port = self.ports.get(name, 0)
            hint = ""
            if isinstance(exc, PermissionError) and 0 < port < 1024:
                hint = ("; ports below 1024 need privilege: run as root, or grant the interpreter "
                        "CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep "
                        "\"$(readlink -f $(which python3))\")")
            raise UsageError(f"cannot listen on {self.bind_address(name)} port {port or '(any)'} for {name}: "
                             f"{exc.strerror or exc}{hint}") from None
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def start_live(self, port: int = 0, *, on_closed: Callable[[LiveSession], None] | None = None,
                         judge: Callable[[list[Observed]], str] | None = None) -> tuple[str, int]:
        """The lab's live view of the sessions and devices (``fakes.live``), on the edge's address;
        each closed session is also handed to ``on_closed`` (the terminal's line); ``judge`` gives a
        device's rolling verdict from its events (the harness's checks)."""
        from fakes.live_view import LiveView  # aiohttp and jinja2: loaded for the lab's view only

        sessions = LiveSessions(on_closed, judge)
        self.records.watch(sessions)
        view = LiveView(sessions, self.store, lambda: self.tenant.tenant)
        view.budget = (self.state, self.records)
        try:
            self.addresses["live"] = await view.start(self.host, port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {self.host} port {port or '(any)'} for the live view: "
                             f"{exc.strerror or exc}") from None
        self._servers.append(view)
        return self.addresses["live"]

    async def _flush_records(self) -> None:
        """Records reach their file within a second while the edge runs, however quiet it is."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.records.flush()

    async def stop(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        servers, self._servers = self._servers, []
        for server in reversed(servers):
            await server.stop()
        if servers:
            await asyncio.sleep(0)  # one turn of the loop: the connections just closed are let go
        self._started = False

    def close(self) -> None:
        """Release files (records, store). Call after ``stop``."""
        self.records.close()
        self.store.close()

    # -- what a harness does with a running edge ----------------------------------------------

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on the edge's loop (at once when called there, or before the edge runs),
        its result or exception handed back: the one way another thread changes a running edge."""
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return fn()
        return asyncio.run_coroutine_threadsafe(_call(fn), loop).result(timeout=30)

    def apply(self, setup: CaseSetup) -> None:
        """Serve one case: its tenant, quota use, faults, TLS and mid-run steps, from the next
        event on, with nothing of the case before it (no restart, no new bind)."""
        def now() -> None:
            self._reset_case(setup.tenant)
            now = self.state.clock()
            for use in setup.quota:
                self.state.ledger.seed(use.mailbox, now=now, recipients_today=use.recipients_today,
                                       messages_this_minute=use.messages_this_minute)
            self.state.faults.extend(setup.faults)
            self.configure_tls(setup.tls_versions, setup.certificate)
            self.state.tarpit = self.tarpit if setup.tarpit is None else setup.tarpit
            self.during(setup.during)
        self.on_loop(now)

    def reset(self, tenant: Tenant | None = None, *, store: bool = False) -> None:
        """Back to ``tenant`` (by default the one being served) with no faults, quota use, sign-ins,
        mid-run steps or TLS variation; ``store=True`` also empties the mailboxes."""
        def now() -> None:
            self._reset_case(tenant or self.tenant)
            self.configure_tls()
            self.state.tarpit = self.tarpit
            if store:
                self.store.clear()
        self.on_loop(now)

    def _reset_case(self, tenant: Tenant) -> None:
        self.during(())
        self.set_tenant(tenant)
        self.clear_faults()
        self.state.ledger.reset()
        self.identity.reset()

    def set_tenant(self, tenant: Tenant) -> None:
        """Serve another tenant configuration from the next event on (no restart)."""
        self.tenant = tenant
        self.secrets.add(*(box.password for box in tenant.mailboxes), *(app.secret for app in tenant.apps))
        self.state.tenant = tenant
        self.state.ledger.limits = tenant.limits
        self._rebuild_zone()

    def bind_address(self, name: str) -> str:
        """Where an endpoint listens: its own address, its host's (smtp.office365.com's 25 and 465
        are the submission address's), or the edge's."""
        host = {"submission-25": "submission", "implicit-tls": "submission"}.get(name, name)
        return self.hosts.get(host, self.host)

    def _rebuild_zone(self) -> None:
        names = {"submission": SUBMISSION_NAMES[:1], "legacy": SUBMISSION_NAMES[1:], "identity": IDENTITY_NAMES,
                 "mx": (self.tenant.mx_host,)}
        by_name = {name: address for endpoint, address in self.hosts.items() for name in names[endpoint]}
        if "submission" in self.hosts and "legacy" not in self.hosts:  # smtp-legacy is the same service
            by_name[SUBMISSION_NAMES[1]] = self.hosts["submission"]
        self.zone = build_zone(self.tenant, [self.advertise], by_name)
        self._spf_results = {}  # of the zone that was

    def spf(self, ip: str, domain: str) -> str:
        """SPF for a sender at ``ip`` using ``domain``, against the lab zone: evaluated once per
        pair while the zone stands (a device sends from one address, as one domain)."""
        key, results = (ip, domain.lower()), self._spf_results
        result = results.get(key)
        if result is None:
            if len(results) >= SPF_REMEMBERED:
                results.clear()
            result = results[key] = check_host(self.zone, ip, domain)
        return result

    def _contexts(self, versions: tuple[str, ...] | None = None,
                  certificate: str = "valid") -> dict[bool, Any]:
        """Server TLS contexts, keyed by "is the MX" (the MX asks for client certificates, which
        are always checked against the lab's own root)."""
        key = (versions, certificate)
        if key not in self._tls_cache:
            leaves = {kind: self._leaf(kind, certificate) for kind in SERVER_LEAVES}
            self._tls_cache[key] = {
                False: server_context(self.ca, leaf=leaves["submission"], versions=versions, keylog=self.keylog),
                True: server_context(self.ca, leaf=leaves["mx"], versions=mx_versions(versions),
                                     request_client_certificate=True, keylog=self.keylog),
            }
        return self._tls_cache[key]

    def _leaf(self, kind: str, certificate: str) -> tuple[Path, Path]:
        """The server certificate a scenario asks for: valid, for another name, from a CA no
        device trusts, or expired (all from the same machinery, in the same shape)."""
        common_name, names = SERVER_LEAVES[kind]
        if certificate == "wrong-name":
            return self.ca.issue("mail.wrong-name.example")
        if certificate == "unknown-ca":
            return self.ca.stranger().issue(common_name, *names, tag=f"{kind}-unknown-ca")
        if certificate == "expired":
            started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
            return self.ca.issue(common_name, *names, not_before=started, tag=f"{kind}-expired")
        return self.ca.server_leaf(kind)

    def configure_tls(self, versions: tuple[str, ...] | None = None, certificate: str = "valid") -> None:
        """What the edge offers from the next connection on: TLS versions, and which certificate."""
        contexts = self._contexts(versions, certificate)
        for server in self._servers:
            if isinstance(server, SmtpListener):
                server.tls_context = contexts[server.endpoint == "mx"]

    def clock(self) -> float:
        """The service's time: the wall clock, moved ahead by what scenarios asked for."""
        return self._clock() + self.clock_offset

    def during(self, steps: list[MidRun] | tuple[MidRun, ...]) -> None:
        """Do each step once that many messages have been stored from now on (in the loop's
        thread, before the 250 for the message that triggers it); ``during(())`` ends them and
        takes the clock's jump back (a service an hour ahead of the world breaks real clients:
        MSAL refuses an ID token issued in its future)."""
        if not steps:
            self.state.on_stored = None
            self.clock_offset = 0.0
            return
        stored = 0

        def on_stored() -> None:
            nonlocal stored
            stored += 1
            for step in steps:
                if step.after_stored == stored:
                    self.do(step)

        self.state.on_stored = on_stored

    def do(self, step: MidRun) -> None:
        """One mid-run step, at once."""
        tenant = self.tenant
        if step.revoke_sign_in:
            self.identity.revoke(step.revoke_sign_in)
        if step.disable_app:
            tenant = tenant.model_copy(update={"apps": tuple(
                app.model_copy(update={"disabled": True}) if app.client_id == step.disable_app else app
                for app in tenant.apps)})
        if step.require_mfa:
            tenant = tenant.model_copy(update={"mailboxes": tuple(
                box.model_copy(update={"mfa_required": True}) if box.address == step.require_mfa.lower() else box
                for box in tenant.mailboxes)})
        if tenant is not self.tenant:
            self.set_tenant(tenant)
        self.clock_offset += step.advance_clock

    def inject(self, fault: Fault) -> None:
        self.state.faults.append(fault)

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def mint_token(self, mailbox: str | None = None, *, app_id: str | None = None,
                   expires_in: float = 3600, **claims: Any) -> str:
        token = self.tokens.mint(now=self.clock(), mailbox=mailbox, app_id=app_id,
                                 expires_in=expires_in, **claims)
        return token  # masked by its shape (fakes.exo.secrets)

    def hostname(self, name: str) -> str:
        """The name a device is told to use for an endpoint (what SNI and DNS should show)."""
        return self.tenant.mx_host if name == "mx" else ENDPOINT_HOSTNAMES[name]

    def describe(self) -> dict[str, Any]:
        """The first line ``exoedge serve`` prints: where everything is."""
        return {
            **{name: f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
               for name, (host, port) in self.addresses.items()},
            "hostnames": {name: self.hostname(name) for name in self.addresses if name not in ("dns", "live")},
            "tenant": self.tenant.tenant,
            "mx_host": self.tenant.mx_host,
            "ca": str(self.ca.cert_path),
            "records": str(self.records.path),
            "store": str(self.store.db_path),
            "state_dir": str(self.state_dir),
        }


class EdgeThread:
    """Runs an ``Edge`` on its own event loop in a daemon thread."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="exo-edge", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.edge.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.edge.stop())
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def start(self) -> Edge:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.edge

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.edge.close()

    def __enter__(self) -> Edge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _identity_server(platform: IdentityPlatform, records: RecordLog, https: ssl.SSLContext) -> Any:
    """The identity platform's HTTPS endpoint, made at its first connection (aiohttp and jinja2 are
    loaded then: an edge no device signs in to idles without them)."""
    from fakes.identity import IdentityServer

    return IdentityServer(platform, records, https)
