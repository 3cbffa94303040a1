"""What an accepted message becomes: its copies, in which folders, and the one NDR for the
recipients it cannot reach (submission and the MX alike). Functions over a ``Session`` that
has judged the message acceptable; they return its ``Decision`` with the ``Acceptance``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import replies as R
from . import rules
from .errors import InternalError
from .events import Acceptance, Decision, Delivery
from .message import Failure, NonDeliveryReport, header_block, new_message_id, prepend_headers
from .replies import Reply

if TYPE_CHECKING:
    from .session import Session


def at_submission(session: Session, content: bytes | bytearray, headers: Any) -> Decision:
    """SMTP AUTH submission: Send As, concurrency and the daily quota, then a copy in Sent Items,
    one in each internal Inbox, one leaving for each external recipient (delayed past 30 a minute)."""
    box = session.user
    if box is None or session.mail_from is None:
        raise InternalError("expected box is not None and session.mail_from is not None")
    tenant, ledger, now = session.state.tenant, session.state.ledger, session.state.clock()
    refused = rules.send_as_refusal(tenant, box, {session.mail_from, *headers.from_addresses})
    if refused:
        return session.say(R.SEND_AS_DENIED, login=box.address, sender=refused)
    if ledger.over_concurrency(box.address, session.id):
        return session.say(R.CONCURRENCY_LIMIT)
    if ledger.would_exceed_daily(box.address, len(session.recipients), now):
        return session.say(R.DAILY_QUOTA)
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

def at_mx(session: Session, content: bytes | bytearray, headers: Any) -> Decision:
    """Direct send and connector relay: SPF, then Inbox or Junk inside, Outbound through a connector."""
    if not headers.from_addresses:
        return session.say(R.MISSING_FROM_HEADER)
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
    decision = _queued(session, stamped, message_id, deliveries, delayed=False, spf=spf)
    return Decision(decision.lines, reply=decision.reply, accepted=decision.accepted,
                    notes={"spf": spf, "attribution": session.attribution_note()})

def _report(session: Session, sender: str, failures: list[Failure], content: bytes, when: float) -> Delivery:
    """The one NDR of a message, for all its failed recipients (rendered when stored)."""
    report = NonDeliveryReport(
        postmaster=f"postmaster@{session.state.tenant.initial_domain}", to=sender, failures=tuple(failures),
        original_headers=bytes(header_block(content)), now=when, host=session.state.suffix_host,
    )
    return Delivery("Inbox", sender, report.recipients, when, content=report)

def _stamp(session: Session, content: bytes | bytearray, headers: Any,
           extra: list[tuple[str, str]]) -> tuple[bytes, str]:
    """Add the Received line (and a Message-ID where the sender gave none)."""
    message_id = headers.message_id or new_message_id(session.host, session.state.new_id().lower())
    added = [("Received", f"from [{session.peer_ip}] by {session.host} with "
                          f"{'ESMTPSA' if session.user else 'ESMTPS' if session.tls_version else 'ESMTP'}; "
                          f"id {session.id}"), *extra]
    if headers.message_id is None:
        added.append(("Message-ID", message_id))
    return prepend_headers(content, added), message_id.strip().strip("<>")

def _queued(session: Session, content: bytes, message_id: str, deliveries: list[Delivery], *, delayed: bool,
            spf: str | None = None) -> Decision:
    acceptance = Acceptance(
        message_id=message_id, mail_from=session.mail_from or "", recipients=tuple(session.recipients),
        content=content, deliveries=tuple(deliveries), delayed=delayed, spf=spf,
    )
    shown = message_id.encode("ascii", "backslashreplace").decode()
    if not session.is_mx:  # smtp.office365.com's own words
        text = R.SUBMITTED.render(session.context(), message_id=shown, hostname=session.state.suffix_host)
        return Decision((text,), reply=R.SUBMITTED, accepted=acceptance)
    text = R.QUEUED.render(
        session.context(), message_id=shown, internal_id=str(int(session.state.clock() * 1000) % 10**13),
        hostname=session.state.suffix_host, size=str(len(content)), seconds="0.000", rate="0.000",
    )
    return Decision((text,), reply=R.QUEUED, accepted=acceptance)


def _failure(recipient: str, status: Reply, **fields: str) -> Failure:
    return Failure(recipient, status.enhanced or "", status.text.format(**fields))


def _undeliverable(recipient: str) -> Failure | None:
    """Out to the internet, where a domain under .invalid (RFC 2606) never exists: it bounces."""
    domain = recipient.rpartition("@")[2]
    if rules.domain_does_not_exist(domain):
        return _failure(recipient, R.NDR_DOMAIN_NONEXISTENT, domain=domain)
    return None
