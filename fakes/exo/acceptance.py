"""What an accepted message becomes: its copies, in which folders, and the one NDR for the
recipients it cannot reach (submission and the MX alike). Functions over a ``Transaction`` (what
the session knows of the message's envelope and its sender, a value) that return an ``Answer``:
the reply to give, with its fields, and the ``Acceptance`` when the message is taken. The session
turns the answer into its decision; nothing here knows the session.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec.structs import replace

from . import replies as R
from . import rules
from .errors import InternalError
from .events import Acceptance, Delivery
from .message import Failure, NonDeliveryReport, header_block, new_message_id, prepend_headers
from .observed import Attribution, Observed, Spf
from .replies import Reply
from .state import EdgeState
from .tenant import Mailbox


class Transaction(msgspec.Struct, frozen=True):
    """One message's envelope and who sends it, as the session has judged them so far."""

    state: EdgeState
    session_id: str
    peer_ip: str
    host: str  # the server's name in Received
    is_mx: bool
    user: Mailbox | None  # the signed-in mailbox (submission)
    mail_from: str
    recipients: tuple[str, ...]
    tls_version: str | None
    attribution: rules.Attribution  # how the MX placed the session (connector or direct send)


class Answer(msgspec.Struct, frozen=True):
    """The reply to give (rendered by the session, with ``fields``), the message taken or not."""

    reply: Reply
    fields: dict[str, str] = msgspec.field(default_factory=dict)
    accepted: Acceptance | None = None
    notes: tuple[Observed, ...] = ()


def at_submission(session: Transaction, content: bytes | bytearray, headers: Any) -> Answer:
    """SMTP AUTH submission: Send As, concurrency and the daily quota, then a copy in Sent Items,
    one in each internal Inbox, one leaving for each external recipient (delayed past 30 a minute)."""
    box = session.user
    if box is None:
        raise InternalError("expected a signed-in mailbox at submission")
    tenant, ledger, now = session.state.tenant, session.state.ledger, session.state.clock()
    refused = rules.send_as_refusal(tenant, box, {session.mail_from, *headers.from_addresses})
    if refused:
        return Answer(R.SEND_AS_DENIED, {"login": box.address, "sender": refused})
    if ledger.over_concurrency(box.address, session.session_id):
        return Answer(R.CONCURRENCY_LIMIT)
    if ledger.would_exceed_daily(box.address, len(session.recipients), now):
        return Answer(R.DAILY_QUOTA)
    deliver_after = ledger.record_submission(box.address, len(session.recipients), now)
    stamped, message_id = _stamp(session, content, headers, [])
    deliveries = [Delivery("Sent Items", box.address, box.address, now)]
    failures = []
    for rcpt in session.recipients:
        kind = rules.classify_recipient(tenant, rcpt)
        if kind == "internal":
            deliveries.append(Delivery("Inbox", rcpt, rcpt, deliver_after))
        elif kind == "external":
            failure = _undeliverable(rcpt)
            if failure:
                failures.append(failure)
            else:
                deliveries.append(Delivery("Outbound", None, rcpt, deliver_after))
        else:
            failures.append(_failure(rcpt, R.NDR_RECIPIENT_NOT_FOUND))
    if failures:
        deliveries.append(_report(session, box.address, failures, stamped, deliver_after))
    return _queued(session, stamped, message_id, deliveries, delayed=deliver_after > now)

def at_mx(session: Transaction, content: bytes | bytearray, headers: Any) -> Answer:
    """Direct send and connector relay: SPF, then Inbox or Junk inside, Outbound through a connector."""
    if not headers.from_addresses:
        return Answer(R.MISSING_FROM_HEADER)
    tenant, now = session.state.tenant, session.state.clock()
    domain = (session.mail_from or "").rpartition("@")[2] or (headers.from_addresses[0].rpartition("@")[2])
    spf = session.state.spf(session.peer_ip, domain)
    header_from = headers.from_addresses[0].rpartition("@")[2]
    results = (f"spf={spf} (sender IP is {session.peer_ip}) smtp.mailfrom={domain}; dkim=none (message not "
               f"signed) header.d=none;dmarc=none action=none header.from={header_from};")
    stamped, message_id = _stamp(session, content, headers, [("Authentication-Results", results)])
    deliveries, failures = [], []
    for rcpt in session.recipients:
        kind = rules.classify_recipient(tenant, rcpt)
        folder = rules.mx_folder(kind, session.attribution, spf)
        failure = _undeliverable(rcpt) if folder == "Outbound" else None
        if failure:
            failures.append(failure)
        else:
            deliveries.append(Delivery(folder, None if folder == "Outbound" else rcpt, rcpt, now))
    if failures:
        # bounced later, after the 250: to the sending mailbox, or out to a sender outside the tenant
        sender = tenant.mailbox(session.mail_from or "")
        ndr = _report(session, sender.address if sender else session.mail_from or "", failures, stamped, now)
        deliveries.append(ndr if sender else replace(ndr, folder="Outbound", mailbox=None))
    answer = _queued(session, stamped, message_id, deliveries, delayed=False, spf=spf)
    connector = session.attribution.connector
    return replace(answer, notes=(Spf(value=spf), Attribution(connector=connector.name if connector else None,
                                                             reason=session.attribution.reason)))

def _report(session: Transaction, sender: str, failures: list[Failure], content: bytes, when: float) -> Delivery:
    """The one NDR of a message, for all its failed recipients (rendered when stored)."""
    report = NonDeliveryReport(
        postmaster=f"postmaster@{session.state.tenant.initial_domain}", to=sender, failures=tuple(failures),
        original_headers=bytes(header_block(content)), now=when, host=session.state.suffix_host,
    )
    return Delivery("Inbox", sender, report.recipients, when, content=report)

def _stamp(session: Transaction, content: bytes | bytearray, headers: Any,
           extra: list[tuple[str, str]]) -> tuple[bytes, str]:
    """Add the Received line (and a Message-ID where the sender gave none)."""
    message_id = headers.message_id or new_message_id(session.host, session.state.new_id().lower())
    added = [("Received", f"from [{session.peer_ip}] by {session.host} with "
                          f"{'ESMTPSA' if session.user else 'ESMTPS' if session.tls_version else 'ESMTP'}; "
                          f"id {session.session_id}"), *extra]
    if headers.message_id is None:
        added.append(("Message-ID", message_id))
    return prepend_headers(content, added), message_id.strip().strip("<>")

def _queued(session: Transaction, content: bytes, message_id: str, deliveries: list[Delivery], *, delayed: bool,
            spf: str | None = None) -> Answer:
    acceptance = Acceptance(
        message_id=message_id, mail_from=session.mail_from, recipients=session.recipients,
        content=content, deliveries=tuple(deliveries), delayed=delayed, spf=spf,
    )
    shown = message_id.encode("ascii", "backslashreplace").decode()
    if not session.is_mx:  # smtp.office365.com's own words
        return Answer(R.SUBMITTED, {"message_id": shown, "hostname": session.state.suffix_host}, acceptance)
    return Answer(R.QUEUED, {
        "message_id": shown, "internal_id": str(int(session.state.clock() * 1000) % 10**13),
        "hostname": session.state.suffix_host, "size": str(len(content)), "seconds": "0.000", "rate": "0.000",
    }, acceptance)


def _failure(recipient: str, status: Reply, **fields: str) -> Failure:
    return Failure(recipient, status.enhanced or "", status.text.format(**fields))


def _undeliverable(recipient: str) -> Failure | None:
    """Out to the internet, where a domain under .invalid (RFC 2606) never exists: it bounces."""
    domain = recipient.rpartition("@")[2]
    if rules.domain_does_not_exist(domain):
        return _failure(recipient, R.NDR_DOMAIN_NONEXISTENT, domain=domain)
    return None
