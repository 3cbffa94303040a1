"""The lab's live view: a session shows up, on the page and as one terminal line, as it happens;
what a device sent is shown as text; the page opens in headless Chromium."""

from __future__ import annotations

import json
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
