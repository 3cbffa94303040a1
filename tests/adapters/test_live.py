"""The lab's live view: a session shows up, on the page and as one terminal line, as it happens;
what a device sent is shown as text; the page opens in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
import subprocess
import urllib.request

from tests.helpers import Device, live_lab


def test_a_session_appears_in_the_live_view_and_as_a_terminal_line(tmp_path, chromium):
    with live_lab(tmp_path / "lab") as (edge, (host, port), closed, seen):
        with Device(edge) as device:
            device.ehlo("<script>alert(1)</script>")
            device.starttls()
            device.ehlo()
            device.login("scanner@contoso.com", "Scan-2026!")
            device.sendmail("scanner@contoso.com", ["alice@contoso.com"], b"Subject: live\r\n\r\nhello\r\n")
        assert seen.wait(10)
        (line,) = closed
        assert " submission  TLSv1.3  AUTH LOGIN scanner@contoso.com: success  2 stored" in line
        with urllib.request.urlopen(f"http://{host}:{port}/sessions.json", timeout=10) as answer:
            (session,) = json.load(answer)
        assert session["closed"] and session["stored"] == 2 and session["sni"] == "smtp.office365.com"
        assert "C: <redacted>" in session["lines"] and "Scan-2026!" not in json.dumps(session)
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
        dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              f"http://{host}:{port}/"], capture_output=True, text=True, timeout=60).stdout
        assert session["id"] in dom and "LOGIN scanner@contoso.com: success" in dom and "alice@contoso.com" in dom
        subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
                        f"--screenshot={tmp_path / 'live.png'}", f"http://{host}:{port}/"], capture_output=True,
                       timeout=60)
        assert (tmp_path / "live.png").stat().st_size > 5_000


def test_the_live_view_lists_devices_with_their_rolling_verdict(tmp_path):
    """Devices by source address, named by their EHLO, each with what Exchange Online would say of
    it so far; a session whose handshake failed shows what the device offered, not "plain"."""
    from harness.fleet import live_verdict
    from tests.helpers import client_context

    with live_lab(tmp_path / "lab", judge=live_verdict) as (edge, (host, port), closed, seen):
        with Device(edge, source="127.0.0.41") as device:
            device.local_hostname = "MFP-4020.printer.lab"
            device.secure()
            device.login("scanner@contoso.com", "Scan-2026!")
            device.sendmail("scanner@contoso.com", ["alice@contoso.com"], b"Subject: ok\r\n\r\nhello\r\n")
        with Device(edge, source="127.0.0.42") as device:
            device.local_hostname = "old-scanner"
            device.ehlo()
            device.starttls(context=client_context(edge, "TLSv1"))
            with contextlib.suppress(smtplib.SMTPException):  # refused with 4.7.66 and closed, as Exchange does
                device.login("scanner@contoso.com", "Scan-2026!")
        with Device(edge, "mx", source="127.0.0.43") as device:
            device.local_hostname = "mta.fabrikam.example"
            with contextlib.suppress(ssl.SSLError, OSError):  # the MX refuses TLS 1.0 at the handshake
                device.starttls(context=client_context(edge, "TLSv1"))
        assert edge.records.wait_for(lambda events: sum(e.kind == "disconnect" for e in events) >= 3, 10)
        devices: dict[str, dict] = {}
        for _ in range(4):  # each read judges one device at least (three here), the newest first
            with urllib.request.urlopen(f"http://{host}:{port}/devices.json", timeout=10) as answer:
                devices = {d["address"]: d for d in json.load(answer)}
            if not any(d["verdict"] == "judging…" for d in devices.values()):
                break
        assert devices["127.0.0.41"]["names"] == ["MFP-4020.printer.lab"]
        assert devices["127.0.0.41"]["verdict"] == "would work", devices["127.0.0.41"]
        assert devices["127.0.0.42"]["verdict"].startswith("would fail at Exchange Online: offers only TLSv1")
        with urllib.request.urlopen(f"http://{host}:{port}/sessions.json", timeout=10) as answer:
            sessions = {s["peer"]: s for s in json.load(answer)}
        assert sessions["127.0.0.42"]["ehlo"] == "old-scanner"
        assert sessions["127.0.0.43"]["tls_shown"] == "offered TLSv1, no TLS", sessions["127.0.0.43"]
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert 'id="devices"' in page and "MFP-4020.printer.lab" in page and "offers only TLSv1" in page
