"""``exoedge serve --lab``: the standard ports on the address given, the device settings, and a
polite one-line refusal where the process may not bind them."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import DNSRecord

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.201"  # a loopback address of its own: nothing else of the tests binds there
PRIVILEGED = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) > 25


def _serve(state: Path, *, wrapper: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen([*wrapper, sys.executable, "-m", "harness.cli", "serve", "--lab", "--host", ADDRESS,
                             "--state-dir", str(state)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="binding ports below 1024 needs root here")
def test_as_root_the_lab_serves_25_465_587_53_and_says_what_to_set_on_the_device(tmp_path):
    edge = _serve(tmp_path / "lab")
    try:
        where = json.loads(edge.stdout.readline())
        assert {where[name] for name in ("mx", "submission", "implicit-tls", "dns")} == {
            f"{ADDRESS}:{port}" for port in (25, 587, 465, 53)}
        assert where["live"] == f"{ADDRESS}:8025"  # the live view of the sessions
        settings = "".join(edge.stderr.readline() for _ in range(8))
        assert f"Live view: http://{ADDRESS}:8025/" in settings
        assert f"DNS server:        {ADDRESS}" in settings
        assert "server smtp.office365.com, port 587, STARTTLS" in settings
        assert "server contoso-com.mail.protection.outlook.com, port 25" in settings
        with smtplib.SMTP(ADDRESS, 587, timeout=10) as device:
            assert device.ehlo()[0] == 250 and device.has_extn("starttls")
        answer = DNSRecord.parse(DNSRecord.question("smtp.office365.com", "A").send(ADDRESS, 53, timeout=5))
        assert [str(rr.rdata) for rr in answer.rr] == [ADDRESS]
    finally:
        edge.terminate()
        edge.communicate(timeout=10)


@pytest.mark.skipif(not PRIVILEGED, reason="this kernel lets anyone bind port 25")
def test_without_privilege_the_lab_refuses_in_one_line_and_says_how_to_grant_it(tmp_path):
    # as root: without CAP_NET_BIND_SERVICE (util-linux's setpriv drops it), as an ordinary user is
    wrapper = ("setpriv", "--bounding-set", "-net_bind_service") if os.geteuid() == 0 else ()
    edge = _serve(tmp_path / "lab", wrapper=wrapper)
    out, err = edge.communicate(timeout=60)
    assert edge.returncode == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"exoedge: cannot listen on {ADDRESS} port ")
    assert "permission denied; ports below 1024 need privilege" in line.lower() and "CAP_NET_BIND_SERVICE" in line
