"""Nothing a peer sends escapes the edge in a harmful form: secrets in each of the forms they
travel in are masked in the records, the live view and the terminal line; a peer's control
characters reach the terminal as escapes, never as ESC or BEL; long lines are cut for display;
a user name that is no mailbox (a password typed in the wrong field) is kept as a hash."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request

import pytest

from fakes.exo.secrets import MASK, unknown_user
from tests.helpers import Device, live_lab

# a password whose every encoding differs from the others: JSON escapes, percent-encoding, both base64s
PASSWORD = 'Kä"se Brot\\~/+?>>?2026'
DEVICE_APP = "00000000-0000-0000-0000-00000000d3c0"


def forms(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {"plain": secret, "base64": base64.b64encode(raw).decode(),
            "urlsafe base64": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "percent-encoded": urllib.parse.quote(secret, safe=""), "form-encoded": urllib.parse.quote_plus(secret),
            "JSON-escaped": json.dumps(secret)[1:-1],
            "JSON-escaped UTF-8": json.dumps(secret, ensure_ascii=False)[1:-1]}


@pytest.fixture
def lab(tmp_path):
    with live_lab(tmp_path / "lab") as (edge, live, closed, done):
        tenant = edge.tenant.with_overrides({"mailboxes": {"scanner@contoso.com": {"password": PASSWORD}}})
        edge.on_loop(lambda: edge.set_tenant(tenant))
        yield edge, live, closed, done


def test_secrets_in_every_form_reach_no_record_no_live_view_no_terminal_line(lab):
    edge, (host, port), closed, done = lab
    assert len(set(forms(PASSWORD).values())) == len(forms(PASSWORD))  # each form is a different text
    grant = edge.on_loop(lambda: edge.identity.token({
        "grant_type": "password", "client_id": DEVICE_APP, "username": "scanner@contoso.com",
        "password": PASSWORD, "scope": "https://outlook.office.com/SMTP.Send offline_access openid"}))
    tokens = {name: grant.body[name] for name in ("access_token", "refresh_token", "id_token")}
    canaries = {**forms(PASSWORD), **tokens}
    with Device(edge) as device:
        device.command_encoding = "utf-8"  # the plain form has an umlaut
        device.starttls()
        device.ehlo()
        for name, text in canaries.items():
            assert device.reply(f"NOOP {name.replace(' ', '-')}={text}")[:1] in "25"  # answered, kept in the records
        code, _ = device.docmd("AUTH LOGIN", base64.b64encode(PASSWORD.encode()).decode())  # the password as user
        assert code == 334
        code, _ = device.docmd(base64.b64encode(b"whatever").decode())
        assert code == 535
    assert done.wait(10)
    edge.records.flush()
    with urllib.request.urlopen(f"http://{host}:{port}/sessions.json", timeout=10) as answer:
        live = answer.read().decode()
    sinks = {"records": edge.records.path.read_text(), "live view": live, "terminal": "\n".join(closed)}
    for sink, text in sinks.items():
        for name, canary in canaries.items():
            assert canary not in text, f"the {name} password or token reached the {sink}"
    assert sinks["records"].count(MASK) >= len(canaries)
    assert unknown_user(PASSWORD) in sinks["records"] and unknown_user(PASSWORD) in sinks["terminal"]


def test_a_peers_control_characters_and_long_lines_reach_the_terminal_and_page_escaped_and_cut(lab):
    edge, (host, port), closed, done = lab
    with Device(edge) as device:
        device.ehlo("\x1b[2J\x07forged")
        device.starttls()
        device.ehlo()
        device.reply("NOOP " + "A" * 65_000)
    assert done.wait(10)
    (line,) = closed
    assert "\x1b" not in line and "\x07" not in line
    with urllib.request.urlopen(f"http://{host}:{port}/sessions.json", timeout=10) as answer:
        (session,) = json.load(answer)
    transcript = "\n".join(session["lines"])
    assert "\x1b" not in transcript and "\\x1b[2J\\x07forged" in transcript
    (noop,) = [text for text in session["lines"] if text.startswith("C: NOOP")]
    assert len(noop) < 300 and "characters" in noop  # cut where it was kept, and again for display
    with urllib.request.urlopen(f"http://{host}:{port}/?page=1", timeout=10) as answer:
        page = answer.read().decode()
    assert session["id"] in page and "A" * 1000 not in page
