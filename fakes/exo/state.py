"""What every session of one edge shares: the tenant, the quota ledger, the clock, the server
names, injected faults and the count of open connections (with the caps on it)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import replies as R
from .events import Fault
from .names import MX_FRONTEND_SUFFIX, MX_SUFFIX, SUBMISSION_FRONTEND_SUFFIX, SUBMISSION_SERVER_SUFFIX
from .quota import QuotaLedger
from .replies import Reply
from .tenant import Tenant
from .tokens import TokenAuthority

# All connections to one edge at once; the adapter lowers it to what its file descriptors allow.
MAX_CONNECTIONS = 4096
# Exchange's tarpit: an error reply comes about 5 s after the command (EXO-REFERENCE observed, five
# public logs). The lab edge (exoedge serve) delays its errors so; the catalog's edge by default not
# (its own speed), but one case keeps the real delay.
TARPIT = 5.0

@dataclass
class EdgeState:
    """What every session of one edge shares: the tenant, the ledger, the clock, the names."""

    tenant: Tenant
    ledger: QuotaLedger
    clock: Callable[[], float]
    new_id: Callable[[], str]  # 16 upper-case hex digits
    tokens: TokenAuthority | None = None
    machine: str = "AM3PR05CA0094"
    region: str = "eurprd05"
    mx_machine: str = "AM5EUR02FT017"
    spf: Callable[[str, str], str] = lambda ip, domain: "none"
    faults: list[Fault] = field(default_factory=list)
    max_connections: int = MAX_CONNECTIONS
    tarpit: float = 0.0  # seconds an error reply waits (TARPIT in the lab)
    open_connections: Counter[str] = field(default_factory=Counter)
    # what a scenario has the service do once a message is stored, before its 250 (fakes.edge.Edge.during)
    on_stored: Callable[[], None] | None = None
    # told whenever a connection is counted in or out (a watcher waits for a count, never polls)
    on_count: Callable[[], None] | None = None

    def admit(self, peer_ip: str) -> Reply | None:
        """Count a new connection in, or say why it is refused (per source, and in all)."""
        if (self.open_connections[peer_ip] >= self.tenant.limits.max_connections_per_source
                or self.open_connections.total() >= self.max_connections):
            return R.TOO_MANY_CONNECTIONS
        self.open_connections[peer_ip] += 1
        if self.on_count is not None:
            self.on_count()
        return None

    def release(self, peer_ip: str) -> None:
        self.open_connections[peer_ip] -= 1
        if self.open_connections[peer_ip] <= 0:
            del self.open_connections[peer_ip]
        if self.on_count is not None:
            self.on_count()

    @property
    def submission_host(self) -> str:
        return f"{self.machine}{SUBMISSION_SERVER_SUFFIX}"

    @property
    def suffix_host(self) -> str:
        return f"{self.machine}.{self.region}{SUBMISSION_FRONTEND_SUFFIX}"

    @property
    def mx_server_host(self) -> str:
        return f"{self.mx_machine}{MX_SUFFIX}"

    @property
    def mx_suffix_host(self) -> str:
        """The front end the MX's replies name in their suffix: ``AM5EUR02FT017.eop-EUR02.prod.
        protection.outlook.com`` (public bounces and transcripts 2023-2026 [O]; EUR regions are
        written in capitals there, NAM ones in small letters)."""
        return _mx_front_end(self.mx_machine)

    def take_fault(self, stage: str) -> Fault | None:
        for fault in self.faults:
            if fault.stage == stage and (fault.remaining is None or fault.remaining > 0):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None


@functools.lru_cache(maxsize=16)
def _mx_front_end(mx_machine: str) -> str:
    region = re.search(r"(?<=\d)[A-Z]{3}\d\d", mx_machine)
    return f"{mx_machine}.eop-{region[0] if region else 'EUR01'}{MX_FRONTEND_SUFFIX}"
