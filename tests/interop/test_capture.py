"""Judging a capture: tcpdump (Debian's) records loopback while real clients send to the edge
from distinct addresses, and ``exoedge judge`` finds, per device, what the live run found of
everything a capture can show, and with the edge's TLS key log everything the lab's own records
show; a damaged or foreign file is judged without a traceback."""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from fakes.edge import Edge, EdgeThread
from harness.cli import main
from harness.pytest_plugin import reset
from tests.helpers import Device, client_context, need

pytestmark = pytest.mark.interop

MAILBOX, PASSWORD = "scanner@contoso.com", "Scan-2026!"
MESSAGE = (f"From: {MAILBOX}\r\nTo: alice@contoso.com\r\nSubject: scan\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
           "Message-ID: <scan-1@printer.lab>\r\n\r\npage 1\r\n")
DEVICES = {"conformant": "127.0.0.21", "tls10": "127.0.0.22", "auth-in-clear": "127.0.0.23", "port-465": "127.0.0.24",
           "direct-send-external": "127.0.0.25", "swaks": "127.0.0.26", "hostile": "127.0.0.27",
           "oauth": "127.0.0.28", "curl": "127.0.0.29", "msmtp": "127.0.0.30",
           "exim": "127.0.0.31"}
HOSTILE = "<script>alert(1)</script>"  # an EHLO name a device controls: text in the report, never markup


@pytest.fixture(scope="module")
def keyed_edge(tmp_path_factory) -> Iterator[Edge]:
    """An edge of this module's own that writes its TLS keys (exoedge serve --keylog)."""
    state = tmp_path_factory.mktemp("keyed-lab")
    with EdgeThread(Edge(state_dir=state / "state", keylog=state / "tls-keys.log")) as lab:
        yield lab


@pytest.fixture
def edge(keyed_edge: Edge) -> Iterator[Edge]:
    reset(keyed_edge)
    yield keyed_edge
    reset(keyed_edge)


@pytest.fixture
def tcpdump() -> str:
    return need("tcpdump", "tcpdump")


SENTINEL = ("127.0.0.99", 9)  # a datagram sent last: once tcpdump shows it, everything before is written


class Capture:
    """tcpdump on loopback, for the edge's ports; stopped once it has written everything sent."""

    def __init__(self, tcpdump: str, path: Path, ports: list[int]) -> None:
        expression = " or ".join([*(f"tcp port {port}" for port in ports), f"udp port {SENTINEL[1]}"])
        self.process = subprocess.Popen(
            [tcpdump, "-i", "lo", "-U", "-n", "-l", "--print", "-s", "0", "-B", "32768", "-w", str(path), expression],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        line = self.process.stderr.readline()  # "listening on lo ...": the capture has begun
        if "listening" not in line:
            self.process.kill()
            self.process.communicate()
            pytest.skip(f"tcpdump cannot capture here: {line.strip()}")

    def stop(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))  # its own source port: another capture's sentinel is not this one
            udp.sendto(b"end", SENTINEL)
            mine = f"127.0.0.1.{udp.getsockname()[1]} > {SENTINEL[0]}.{SENTINEL[1]}"
        assert self.process.stdout is not None
        for line in self.process.stdout:  # packets in the order tcpdump took them
            if mine in line:
                break
        self.process.terminate()
        _, said = self.process.communicate(timeout=10)  # and its pipes closed
        dropped = re.search(r"(\d+) packets? dropped by kernel", said)
        # a busy machine can outrun the capture buffer: say so, rather than judge half a capture
        assert dropped is None or dropped[1] == "0", f"tcpdump lost packets: {dropped[0] if dropped else ''}"


def _device(edge, endpoint: str, source: str, name: str) -> Device:
    device = Device(edge, endpoint, source=DEVICES[source])
    device.local_hostname = name  # its EHLO name, which often names the model
    return device


def _other_clients(edge, tmp_path: Path) -> None:
    """curl (XOAUTH2) and msmtp (GnuTLS, AUTH LOGIN), each from an address of its own, where installed."""
    host, port = edge.addresses["submission"]
    mail = tmp_path / "scan.eml"
    mail.write_text(MESSAGE)
    if curl := shutil.which("curl"):
        done = subprocess.run([
            curl, "-sS", "--url", f"smtp://smtp.office365.com:{port}", "--resolve", f"smtp.office365.com:{port}:{host}",
            "--interface", DEVICES["curl"], "--ssl-reqd", "--cacert", str(edge.ca.cert_path),
            "--mail-from", MAILBOX, "--mail-rcpt", "alice@contoso.com", "--user", MAILBOX,
            "--oauth2-bearer", edge.tokens.mint(now=time.time(), mailbox=MAILBOX), "-T", str(mail)],
            capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
    if msmtp := shutil.which("msmtp"):
        done = subprocess.run([
            msmtp, f"--host={host}", f"--port={port}", f"--source-ip={DEVICES['msmtp']}", "--domain=msmtp.printer.lab",
            "--tls=on", "--tls-starttls=on", f"--tls-trust-file={edge.ca.cert_path}",
            "--tls-host-override=smtp.office365.com", "--auth=login", f"--user={MAILBOX}",
            f"--passwordeval=echo '{PASSWORD}'", f"--from={MAILBOX}", "alice@contoso.com"],
            input=MESSAGE, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
    if exim := shutil.which("exim"):  # an MTA: AUTH LOGIN, then the message over BDAT
        from tests.interop.test_exim import exim_config, send_with_exim

        spool = Path(tempfile.mkdtemp(prefix="exo-edge-exim-"))  # Exim's delivery user reads it
        spool.chmod(0o755)
        try:
            send_with_exim(exim, exim_config(spool, edge, "submission", source=DEVICES["exim"], login=True),
                           MAILBOX, ["alice@contoso.com"], "capture1")
        finally:
            shutil.rmtree(spool, ignore_errors=True)


def _send_all(edge, swaks: str | None) -> None:
    with _device(edge, "submission", "conformant", "MFP-4020.printer.lab") as device:
        device.secure()
        device.login(MAILBOX, PASSWORD)
        device.sendmail(MAILBOX, ["alice@contoso.com"], MESSAGE)
    with _device(edge, "submission", "tls10", "old-scanner") as device:
        device.ehlo()
        device.starttls(context=client_context(edge, "TLSv1"))
        with pytest.raises(smtplib.SMTPException):
            device.login(MAILBOX, PASSWORD)
    with _device(edge, "submission", "auth-in-clear", "cleartext-fax") as device:
        device.ehlo()
        device.esmtp_features["auth"] = "LOGIN"  # it sends AUTH though the edge offers none before TLS
        with pytest.raises(smtplib.SMTPException):
            device.login(MAILBOX, PASSWORD)
    host465, port465 = edge.addresses["implicit-tls"]
    with (socket.create_connection((host465, port465), source_address=(DEVICES["port-465"], 0), timeout=10) as raw,
          pytest.raises((ssl.SSLError, OSError))):
        client_context(edge).wrap_socket(raw, server_hostname="smtp.office365.com").do_handshake()
    with (_device(edge, "mx", "direct-send-external", "app.fabrikam.example") as device,
          pytest.raises(smtplib.SMTPRecipientsRefused)):
        device.sendmail(MAILBOX, ["partner@example.org"], MESSAGE)
    with _device(edge, "submission", "hostile", HOSTILE) as device:
        device.ehlo()
    with _device(edge, "submission", "oauth", "app-server.contoso.com") as device:  # a token, not a password
        device.secure()
        token = edge.tokens.mint(now=time.time(), mailbox=MAILBOX)
        device.auth("XOAUTH2", lambda challenge=None: f"user={MAILBOX}\x01auth=Bearer {token}\x01\x01")
        device.sendmail(MAILBOX, ["alice@contoso.com"], MESSAGE)
    if swaks is not None:
        host, port = edge.addresses["submission"]
        done = subprocess.run([swaks, "--server", host, "--port", str(port), "--helo", "swaks.printer.lab",
                               "--local-interface", DEVICES["swaks"], "--tls", "--tls-ca-path", str(edge.ca.cert_path),
                               "--tls-sni", "smtp.office365.com", "--auth", "LOGIN", "--auth-user", MAILBOX,
                               "--auth-password", PASSWORD, "--from", MAILBOX, "--to", "alice@contoso.com"],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def mark(edge) -> int:
    return edge.records.mark()


@pytest.fixture
def sent(edge, mark, tcpdump, tmp_path) -> tuple[Path, list[int]]:
    """Every device has sent; the capture of it, and the edge's ports it was taken on."""
    capture_file = tmp_path / "lab.pcap"
    ports = [edge.addresses[name][1] for name in ("submission", "implicit-tls", "mx")]
    capture = Capture(tcpdump, capture_file, ports)
    try:
        _send_all(edge, shutil.which("swaks"))
        _other_clients(edge, tmp_path)
    finally:
        capture.stop()
    return capture_file, ports


def _judge(source: Path, tmp_path: Path, *extra: str) -> tuple[dict[str, dict], Path]:
    out = tmp_path / "fleet.json"
    code = main(["judge", str(source), "--report", str(tmp_path / "reports"), "--json", str(out), *extra])
    devices = json.loads(out.read_text())["devices"]
    assert code == 1, devices  # some device would fail
    (page,) = (tmp_path / "reports").glob("fleet-*/index.html")
    return {d["address"]: d for d in devices}, page


@pytest.fixture
def judged(sent, tmp_path) -> dict[str, dict]:
    capture_file, ports = sent
    devices, _ = _judge(capture_file, tmp_path, "--port", f"submission={ports[0]}", "--port",
                        f"implicit-tls={ports[1]}", "--port", f"mx={ports[2]}")
    return devices


def _check(device: dict, name: str) -> bool | None:
    return next(c["passed"] for c in device["checks"] if c["check"] == name)


def test_each_device_of_a_capture_gets_the_verdict_its_live_run_gave(judged):
    good = judged[DEVICES["conformant"]]
    assert good["verdict"] == "would work" and good["option"] == "submission", good
    assert good["names"] == ["MFP-4020.printer.lab"]
    (fingerprint,) = good["ja4"]  # Python's TLS stack: TLS 1.3, an SNI given, no ALPN
    assert fingerprint.startswith("t13d") and fingerprint[8:10] == "00" and fingerprint.count("_") == 2
    assert judged[DEVICES["tls10"]]["ja4"][0].startswith("t10d")
    assert _check(good, "tls") is True and _check(good, "port") is True
    for hidden in ("starttls_before_auth", "auth_mechanism", "well_formed"):  # inside TLS: never a guess
        assert _check(good, hidden) is None
        assert "not visible in the capture" in next(c["message"] for c in good["checks"] if c["check"] == hidden)
    old = judged[DEVICES["tls10"]]
    assert old["verdict"] == "would fail" and "offers only TLSv1" in old["cause"], old
    clear = judged[DEVICES["auth-in-clear"]]
    assert clear["verdict"] == "would fail" and "without STARTTLS" in clear["cause"], clear
    trap = judged[DEVICES["port-465"]]
    assert trap["verdict"] == "would fail" and "port 465" in trap["cause"], trap
    direct = judged[DEVICES["direct-send-external"]]
    assert direct["option"] == "direct-send" and direct["verdict"] == "would fail", direct
    assert "partner@example.org" in direct["cause"] and "550" in direct["cause"]
    for client in ("swaks", "curl", "msmtp", "exim"):  # installed in CI; locally they may not be
        if shutil.which(client):
            assert judged[DEVICES[client]]["verdict"] == "would work", judged[DEVICES[client]]


def test_a_file_that_is_not_a_capture_gets_one_line(tmp_path, capsys):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("scan to email stopped working\n")
    assert main(["judge", str(bogus), "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.txt" in err[0] and "not a capture" in err[0]


def test_the_labs_records_judge_the_same_devices_with_what_tls_hid(edge, mark, sent, tmp_path):
    """exoedge judge on the lab's records: the lab saw inside TLS, so what the capture could not
    show is judged too. (The records of this test's window: the edge's whole file holds every
    earlier test's sessions from the same addresses.)"""
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in edge.records.window(mark)))
    devices, page = _judge(records, tmp_path)
    assert "ClientHello: offers TLSv1" in page.read_text()  # the lab kept them as sent; the report reads them
    good = devices[DEVICES["conformant"]]
    assert good["verdict"] == "would work" and _check(good, "auth_mechanism") is True
    assert _check(good, "starttls_before_auth") is True and _check(good, "accepted") is True
    assert "offers only TLSv1" in devices[DEVICES["tls10"]]["cause"]
    assert "without STARTTLS" in devices[DEVICES["auth-in-clear"]]["cause"]
    assert "port 465" in devices[DEVICES["port-465"]]["cause"]
    assert "550" in devices[DEVICES["direct-send-external"]]["cause"]


def test_the_fleet_report_in_headless_chromium(sent, tmp_path, chromium):
    capture_file, ports = sent
    _, page = _judge(capture_file, tmp_path, "--port", f"submission={ports[0]}", "--port",
                     f"implicit-tls={ports[1]}", "--port", f"mx={ports[2]}")
    html = page.read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    table = dom.split('id="fleet"', 1)[1].split("</table>", 1)[0]
    for address in (DEVICES["conformant"], DEVICES["tls10"], DEVICES["port-465"]):
        assert address in table
    assert "offers only TLSv1" in dom and "<script>alert" not in dom
    shot = tmp_path / "fleet.png"
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    assert shot.stat().st_size > 10_000  # kept under the test's folder for a person to look at


def _verdicts(devices: dict[str, dict]) -> dict[str, tuple]:
    return {address: (d["verdict"], d["option"], d["cause"], {c["check"]: c["passed"] for c in d["checks"]})
            for address, d in devices.items()}


def test_with_the_edges_key_log_a_capture_shows_what_the_lab_saw(edge, mark, sent, tmp_path):
    """exoedge judge --keylog: TLS 1.3 and TLS 1.0 opened with the lab's keys, so the AUTH
    mechanism, the message and Exchange's replies inside TLS are judged from the capture, and
    every device gets the verdict, cause and checks the lab's records give it."""
    capture_file, ports = sent
    port_flags = ["--port", f"submission={ports[0]}", "--port", f"implicit-tls={ports[1]}", "--port", f"mx={ports[2]}"]
    opened, page = _judge(capture_file, tmp_path / "opened", "--keylog", str(edge.keylog), *port_flags)
    good = opened[DEVICES["conformant"]]
    assert good["verdict"] == "would work", good
    for seen in ("starttls_before_auth", "auth_mechanism", "accepted"):  # all inside TLS
        assert _check(good, seen) is True, good
    html = page.read_text()
    read_inside = re.search(r"(\d+) of (\d+) TLS connection\(s\) read inside", html)
    assert read_inside and read_inside[1] == read_inside[2] and int(read_inside[1]) >= 2, read_inside
    assert "not visible" not in json.dumps(good) and PASSWORD not in html
    app = opened[DEVICES["oauth"]]
    assert app["verdict"] == "would work" and "XOAUTH2" in next(
        c["message"] for c in app["checks"] if c["check"] == "auth_mechanism"), app
    assert "Bearer" not in html and "eyJ" not in html  # the token's parts never reach the page
    for client, mechanism in (("curl", "XOAUTH2"), ("msmtp", "LOGIN"), ("exim", "LOGIN")):  # OpenSSL, GnuTLS
        if shutil.which(client):
            assert f"authenticated with {mechanism}" in next(
                c["message"] for c in opened[DEVICES[client]]["checks"] if c["check"] == "auth_mechanism")
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in edge.records.window(mark)))
    lab, _ = _judge(records, tmp_path / "lab")
    assert _verdicts(opened) == _verdicts(lab)


def test_a_key_log_that_is_none_gets_one_line_naming_its_line(sent, tmp_path, capsys):
    capture_file, _ = sent
    keys = tmp_path / "keys.log"
    keys.write_text("# TLS secrets log file\nCLIENT_RANDOM 00 11\n")
    assert main(["judge", str(capture_file), "--keylog", str(keys), "--report", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{keys}:2:" in line and "32 octets" in line


def test_a_key_log_of_other_connections_opens_nothing_and_says_so(sent, tmp_path):
    """Keys of another run: nothing is decrypted into data, what TLS hid stays not visible."""
    capture_file, ports = sent
    keys = tmp_path / "other-run.log"
    keys.write_text("CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\n"
                    "CLIENT_TRAFFIC_SECRET_0 " + "ef" * 32 + " " + "01" * 48 + "\n")
    devices, page = _judge(capture_file, tmp_path, "--keylog", str(keys), "--port", f"submission={ports[0]}",
                           "--port", f"implicit-tls={ports[1]}", "--port", f"mx={ports[2]}")
    good = devices[DEVICES["conformant"]]
    assert _check(good, "auth_mechanism") is None and _check(good, "tls") is True
    assert "not visible in the capture" in next(c["message"] for c in good["checks"] if c["check"] == "auth_mechanism")
    assert re.search(r"\b0 of \d+ TLS connection", page.read_text())


REFERENCE = {  # reference senders, each with a case whose order it is given: the devices of the issue
    "submission": "submission/auth-login-or-xoauth2", "tls10-only": "submission/tls-1.2-or-later",
    "implicit-tls-465": "submission/port-587-not-465", "no-starttls": "submission/starttls-before-auth",
    "direct-send": "direct-send/external-recipient-refused", "oauth-device": "oauth/device-code-then-xoauth2",
}


def test_the_reference_senders_judged_from_a_capture_with_keys_as_from_the_labs_records(edge, mark, tcpdump,
                                                                                         tmp_path):
    """The bundled reference senders (conformant, TLS 1.0 only, port 465, AUTH before STARTTLS,
    direct send to an external recipient, OAuth device code) send while tcpdump captures; with
    the edge's key log the capture gives every device the verdict the lab's records give it."""
    from fakes.exo.lab import roles
    from harness.reference import PROFILES, ReferenceSender
    from harness.runner import Runner
    from harness.scenario import load_catalog

    catalog = {case.id: case for case in load_catalog(Path(__file__).resolve().parents[2] / "scenarios")}
    names = ("submission", "submission-25", "implicit-tls", "mx", "identity")
    ports = {name: edge.addresses[name][1] for name in names}
    capture = Capture(tcpdump, tmp_path / "reference.pcap", list(ports.values()))
    try:
        for name, case_id in REFERENCE.items():
            sender = ReferenceSender(PROFILES[name])
            case = catalog[case_id].cast(roles(edge.tenant))  # its {roles} filled in, as a run does
            sender.send(Runner(edge, sender, work_dir=tmp_path).order(case, edge.tenant))
    finally:
        capture.stop()
    flags = [arg for name, port in ports.items() for arg in ("--port", f"{name}={port}")]
    opened, _ = _judge(tmp_path / "reference.pcap", tmp_path / "opened", "--keylog", str(edge.keylog), *flags)
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in edge.records.window(mark)))
    lab, _ = _judge(records, tmp_path / "lab")
    assert _verdicts(opened) == _verdicts(lab)
    sources = {PROFILES[name].source for name in REFERENCE} - {None}
    assert sources <= set(opened)  # each profile of its own address was seen
    assert opened[PROFILES["submission"].source]["verdict"] == "would work"
    assert "offers only TLSv1" in opened[PROFILES["tls10-only"].source]["cause"]
    assert "port 465" in opened[PROFILES["implicit-tls-465"].source]["cause"]
    assert "without STARTTLS" in opened[PROFILES["no-starttls"].source]["cause"]
    (direct,) = [d for d in opened.values() if d["option"] == "direct-send"]
    assert "550 5.7.64" in direct["cause"] and "partner@" in direct["cause"], direct
    device = opened[PROFILES["oauth-device"].source]
    assert "XOAUTH2" in next(c["message"] for c in device["checks"] if c["check"] == "auth_mechanism"), device
    # its sign-in, read inside TLS (the reference device signs in from the host's own address)
    polls = [c for d in opened.values() for c in d["checks"] if c["check"] == "oauth_polling_pace"]
    assert polls and polls[0]["passed"] is True, polls
