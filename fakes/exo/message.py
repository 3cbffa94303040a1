"""What the edge reads from a message body and what it writes into one.

Header parsing (From, Message-ID, Date), the bare-LF test, the headers the edge adds on
acceptance, and the non-delivery report it writes back to a sender. Pure functions over bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses, make_msgid

_BARE_LF = re.compile(rb"(?<!\r)\n")


def has_bare_lf(content: bytes) -> bool:
    return _BARE_LF.search(content) is not None


@dataclass(frozen=True)
class Headers:
    from_addresses: tuple[str, ...]
    message_id: str | None
    date: str | None
    subject: str | None
    header_bytes: int


def read_headers(content: bytes) -> Headers:
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[: end + 2]
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    froms = tuple(addr.lower() for _, addr in getaddresses(parsed.get_all("From", [])) if addr)
    return Headers(
        from_addresses=froms,
        message_id=parsed.get("Message-ID"),
        date=parsed.get("Date"),
        subject=parsed.get("Subject"),
        header_bytes=len(head),
    )


def message_facts(content: bytes) -> dict[str, object]:
    """What a conformance check needs to know about a message as the sender sent it."""
    headers = read_headers(content)
    lines = content.split(b"\r\n")
    return {
        "has_date": headers.date is not None,
        "has_message_id": headers.message_id is not None,
        "has_from": bool(headers.from_addresses),
        "bare_lf": has_bare_lf(content),
        "longest_line": max((len(line) for line in lines), default=0),
    }


def new_message_id(host: str, unique: str) -> str:
    return f"<{unique}@{host}>"


def prepend_headers(content: bytes, headers: list[tuple[str, str]]) -> bytes:
    block = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    return block + content


def non_delivery_report(
    *,
    postmaster: str,
    to: str,
    recipient: str,
    status: str,
    text: str,
    original_headers: bytes,
    now: float,
    host: str,
) -> bytes:
    """A multipart/report DSN (RFC 3464) as Exchange Online writes one to the sender.

    ``status`` is the enhanced code (``5.1.10``), ``text`` the reply text after it.
    """
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Microsoft Outlook <{postmaster}>"
    report["To"] = to
    report["Subject"] = "Undeliverable: message"
    report["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    report["Message-ID"] = make_msgid(domain=host)
    report.attach(MIMEText(
        f"Your message to {recipient} couldn't be delivered.\n\n"
        f"Remote server returned '550 {status} {text}'\n"
    ))
    fields = Message()
    fields["Reporting-MTA"] = f"dns;{host}"
    recipient_fields = Message()
    recipient_fields["Final-Recipient"] = f"rfc822;{recipient}"
    recipient_fields["Action"] = "failed"
    recipient_fields["Status"] = status
    recipient_fields["Diagnostic-Code"] = f"smtp;550 {status} {text}"
    delivery_status = Message()
    delivery_status.set_type("message/delivery-status")
    delivery_status.set_payload([fields, recipient_fields])
    report.attach(delivery_status)
    headers = Message()
    headers.set_type("text/rfc822-headers")
    headers.set_payload(original_headers.decode("utf-8", "replace"))
    report.attach(headers)
    return report.as_bytes(policy=policy.SMTP)
