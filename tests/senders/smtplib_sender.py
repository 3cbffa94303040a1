"""A line-of-business app's mail code, as a command sender: Python's smtplib driven by EXO_* variables.

Connects to EXO_ADDR:EXO_PORT naming EXO_HOST (SNI and certificate check), STARTTLS, AUTH LOGIN
(XOAUTH2 with EXO_TOKEN when basic authentication is refused), sends EXO_COUNT messages of
EXO_SIZE extra bytes with smtplib's SIZE declaration, and retries a 4xx twice with backoff.
"""

from __future__ import annotations

import base64
import os
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

env = os.environ


def message(index: int) -> bytes:
    msg = EmailMessage(policy=SMTP)  # CRLF line endings: smtplib sends bytes as they are
    msg["From"] = env["EXO_FROM"]
    msg["To"] = env["EXO_TO"]
    msg["Subject"] = f"{env['EXO_SUBJECT']} #{index + 1}"
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="app.lab")
    msg.set_content("Appointment reminder.\n" + ("y" * 70 + "\n") * (int(env.get("EXO_SIZE", "0")) // 71))
    return msg.as_bytes()


def login(client: smtplib.SMTP) -> None:
    try:
        client.login(env["EXO_USER"], env["EXO_PASS"])
    except smtplib.SMTPAuthenticationError as exc:
        if env.get("EXO_TOKEN") and (b"5.7.30" in exc.smtp_error or b"basic authentication" in exc.smtp_error):
            raw = f"user={env['EXO_USER']}\x01auth=Bearer {env['EXO_TOKEN']}\x01\x01"
            code, text = client.docmd("AUTH XOAUTH2", base64.b64encode(raw.encode()).decode())
            if code == 235:
                return
            raise smtplib.SMTPAuthenticationError(code, text) from None
        raise


def send_once(data: bytes) -> None:
    context = ssl.create_default_context(cafile=env["EXO_CAFILE"])
    with smtplib.SMTP(timeout=10, source_address=(env["EXO_SOURCE_ADDR"], 0)) as client:
        client.connect(env["EXO_ADDR"], int(env["EXO_PORT"]))
        client._host = env["EXO_HOST"]  # the name the app is configured with
        client.starttls(context=context)
        login(client)
        client.sendmail(env["EXO_FROM"], env["EXO_TO"].split(","), data)


def main() -> int:
    failures = 0
    for index in range(int(env.get("EXO_COUNT", "1"))):
        data = message(index)
        for attempt in range(3):
            try:
                send_once(data)
                break
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused,
                    smtplib.SMTPServerDisconnected) as exc:
                code = getattr(exc, "smtp_code", None)
                if isinstance(exc, smtplib.SMTPRecipientsRefused):
                    code = next(iter(exc.recipients.values()))[0]
                print(f"attempt {attempt + 1}: {exc}", file=sys.stderr)
                if code is not None and code >= 500:
                    failures += 1
                    break
                time.sleep(0.1 * 2**attempt)  # the app's backoff before a retry: what a check judges
            except ssl.SSLError as exc:
                print(f"TLS: {exc}", file=sys.stderr)
                failures += 1
                break
        else:
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
