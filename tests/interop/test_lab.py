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


def _serve(state: Path, *extra: str, wrapper: tuple[str, ...] = (), host: str = ADDRESS) -> subprocess.Popen[str]:
    return subprocess.Popen([*wrapper, sys.executable, "-m", "harness.cli", "serve", "--lab", "--host", host,
                             "--state-dir", str(state), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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


@pytest.mark.skipif(os.geteuid() != 0, reason="binding ports below 1024 needs root here")
def test_each_microsoft_host_on_an_address_of_its_own(tmp_path):
    """smtp.office365.com, the tenant's MX and login.microsoftonline.com each on one address, as in
    the service: a device set to smtp.office365.com:25 reaches submission, not the MX, and the lab
    DNS answers each name with its own address."""
    dns, submission, mx, identity = "127.0.0.211", "127.0.0.212", "127.0.0.213", "127.0.0.214"
    edge = _serve(tmp_path / "lab", "--address", f"submission={submission}", "--address", f"mx={mx}",
                  "--address", f"identity={identity}", "--live-port", "0", host=dns)
    try:
        where = json.loads(edge.stdout.readline())
        assert where["submission"] == f"{submission}:587" and where["submission-25"] == f"{submission}:25"
        assert where["implicit-tls"] == f"{submission}:465" and where["mx"] == f"{mx}:25"
        assert where["identity"] == f"{identity}:443" and where["dns"] == f"{dns}:53"
        with smtplib.SMTP(submission, 25, timeout=10) as device:  # smtp.office365.com:25 is submission
            banner = device.ehlo()[1]
            assert device.has_extn("starttls") and b"outlook.office365.com" in banner
        with smtplib.SMTP(mx, 25, timeout=10) as device:
            assert b"mail.protection.outlook.com" in device.ehlo()[1]
        for name, address in (("smtp.office365.com", submission), ("contoso-com.mail.protection.outlook.com", mx),
                              ("login.microsoftonline.com", identity), ("smtp-legacy.office365.com", submission)):
            answer = DNSRecord.parse(DNSRecord.question(name, "A").send(dns, 53, timeout=5))
            assert [str(rr.rdata) for rr in answer.rr] == [address], name
    finally:
        edge.terminate()
        edge.communicate(timeout=10)


def test_an_address_of_its_own_is_only_for_a_microsoft_host(tmp_path):
    edge = _serve(tmp_path / "lab", "--address", "dns=127.0.0.215", host="127.0.0.216")
    out, err = edge.communicate(timeout=60)
    assert edge.returncode != 0 and out == "" and "--address 'dns=127.0.0.215'" in err
