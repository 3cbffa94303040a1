"""How a sender is made to send: a shell command, a Python callable, a person, or a reference profile.

The runner hands every sender an ``Order`` (what to send, where, as whom). A command sender gets
it as ``EXO_*`` environment variables (the contract of DESIGN.md, plus ``EXO_DNS`` and
``EXO_PORTS``); its exit status and output are kept for the report and never judged: the
edge's records are the truth.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Order:
    host: str  # the DNS name to use: smtp.office365.com or the tenant MX host
    addr: str  # where the edge listens (what the name resolves to)
    port: int  # the port to connect to for this option (587 or 25, mapped to the edge's)
    ports: dict[int, int]  # well-known port -> the edge's port (587, 25, 465)
    dns: str  # the lab DNS server, "addr:port"
    sender: str
    to: tuple[str, ...]
    subject: str
    user: str
    password: str | None
    token: str | None
    cafile: str
    cert: str | None = None
    key: str | None = None
    source_addr: str = "127.0.0.1"
    identity: str = ""  # the lab's login.microsoftonline.com, "addr:port"
    authority: str = ""  # https://login.microsoftonline.com/<tenant domain>
    client_id: str = ""  # the tenant's app a device signs in as (device code flow), or an app sends as
    client_secret: str | None = None  # app-only cases: the app's secret (client credentials)
    interval: float = 0.0  # seconds between messages
    sign_in: str = "any"  # the case's: "oauth" (the device's own tokens for a mailbox), "app" (app-only), "any"
    count: int = 1
    size: int = 0
    timeout: float = 15.0

    def env(self) -> dict[str, str]:
        values = {
            "EXO_HOST": self.host, "EXO_ADDR": self.addr, "EXO_PORT": str(self.port),
            "EXO_FROM": self.sender, "EXO_TO": ",".join(self.to), "EXO_SUBJECT": self.subject,
            "EXO_USER": self.user, "EXO_PASS": self.password or "", "EXO_TOKEN": self.token or "",
            "EXO_CAFILE": self.cafile, "EXO_CERT": self.cert or "", "EXO_KEY": self.key or "",
            "EXO_SOURCE_ADDR": self.source_addr, "EXO_COUNT": str(self.count), "EXO_SIZE": str(self.size),
            "EXO_DNS": self.dns, "EXO_PORTS": ",".join(f"{k}={v}" for k, v in sorted(self.ports.items())),
            "EXO_IDENTITY": self.identity, "EXO_AUTHORITY": self.authority, "EXO_CLIENT_ID": self.client_id,
            "EXO_CLIENT_SECRET": self.client_secret or "", "EXO_INTERVAL": str(self.interval),
            "EXO_SIGN_IN": self.sign_in,
        }
        return values


@dataclass
class SenderResult:
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # the sender itself could not be run (not a verdict on it)
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)


class Sender(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def option(self) -> str: ...  # submission | direct-send | relay

    @property
    def connector(self) -> str | None: ...  # relay senders: ip | certificate

    @property
    def source_addr(self) -> str | None: ...  # the loopback address it sends from, if its own

    @property
    def sign_in(self) -> str | None: ...  # "oauth", "app", "password"; None: unknown (it runs every case)

    @property
    def manual(self) -> bool: ...  # a person at a device: waited for longer, and may come back

    def send(self, order: Order) -> SenderResult: ...


@dataclass
class CommandSender:
    command: str
    option: str = "submission"
    connector: str | None = None
    source_addr: str | None = None
    sign_in: str | None = None
    manual: bool = False

    @property
    def name(self) -> str:
        return f"command:{self.command}"

    def send(self, order: Order) -> SenderResult:
        start = time.monotonic()
        try:
            done = subprocess.run(self.command, shell=True, env={**os.environ, **order.env()}, capture_output=True,
                                  text=True, timeout=order.timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as exc:
            return SenderResult(None, _text(exc.stdout), _text(exc.stderr),
                                f"did not finish within {order.timeout:g} s", time.monotonic() - start)
        except OSError as exc:
            return SenderResult(None, error=f"could not run the command: {exc}")
        return SenderResult(done.returncode, done.stdout, done.stderr, None, time.monotonic() - start)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


@dataclass
class PythonSender:
    target: str  # module:callable, called with the Order; may return an exit code
    option: str = "submission"
    connector: str | None = None
    source_addr: str | None = None
    sign_in: str | None = None
    manual: bool = False

    @property
    def name(self) -> str:
        return f"python:{self.target}"

    def send(self, order: Order) -> SenderResult:
        module_name, _, attr = self.target.partition(":")
        try:
            fn: Callable[[Order], int | None] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            return SenderResult(error=f"cannot load {self.target}: {exc}")
        start = time.monotonic()
        try:
            code = fn(order)
        except Exception as exc:  # the sender's own failure is its result, not the harness's
            return SenderResult(1, error=None, stderr=f"{type(exc).__name__}: {exc}",
                                duration=time.monotonic() - start)
        return SenderResult(0 if code is None else int(code), duration=time.monotonic() - start)


@dataclass
class ManualSender:
    """A device in a lab: the person at it is told what to do, then the edge waits for it."""

    option: str = "submission"
    connector: str | None = None
    source_addr: str | None = None
    say: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))
    name: str = "manual"
    sign_in: str | None = None
    manual: bool = True

    def send(self, order: Order) -> SenderResult:
        who = f" signed in as {order.user}" if self.option == "submission" else ""
        steps = []
        if order.sign_in == "oauth":
            steps = [f"This case signs in with OAuth. Set the device's OAuth app (client) id to {order.client_id} "
                     f"and its authority to {order.authority} (the lab DNS names it; the device must trust the "
                     "lab CA).",
                     f"When the device shows a code, open https://www.microsoft.com/link in a browser that uses the "
                     f"lab DNS, type the code and sign in as {order.user} with that mailbox's password from the "
                     "tenant file (tick the second-factor box if the page asks for it)."]
        elif order.sign_in == "app":
            steps = [f"This case sends app-only. Configure the app with client id {order.client_id} and the "
                     f"secret of that app in the tenant file, scope https://outlook.office365.com/.default, "
                     f"authority {order.authority}."]
        pace = f", {order.interval:g} s apart" if order.interval and order.count > 1 else ""
        lines = [*steps, f"Now send {order.count} message(s){pace} from the device{who}: from {order.sender} to "
                         f"{', '.join(order.to)} through {order.host} (port {order.port}). "
                         f"Waiting up to {order.timeout:g} s."]
        self.say("\n" + "\n".join(f">>> {line}" for line in lines) + "\n")
        return SenderResult(None, notes=["manual: the person at the device was asked to send"])
