"""Exim, a real MTA that uses CHUNKING (BDAT) whenever it is offered, as a smarthost client of the
edge: SMTP AUTH submission, direct send to the MX, and relay through both kinds of connector.

Exim runs as a one-shot client (``exim -C CONF -odf``) with a spool of its own; every message
must arrive exactly once, and the records must show that it came over BDAT.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

SCANNER = "scanner@contoso.com"


@pytest.fixture
def exim_dir() -> Iterator[Path]:
    """A directory Exim's delivery process can read: it runs as Exim's own user, not as root, and
    pytest's temporary directories are private to their owner."""
    path = Path(tempfile.mkdtemp(prefix="exo-edge-exim-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def exim_config(tmp_path: Path, edge, endpoint: str, *, source: str = "127.0.0.1", login: bool = False,
                certificate: tuple[Path, Path] | None = None) -> Path:
    host, port = edge.addresses[endpoint]
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    ca = tmp_path / "lab-ca.pem"
    shutil.copyfile(edge.ca.cert_path, ca)
    ca.chmod(0o644)
    transport = [
        "  driver = smtp", f"  port = {port}", f"  interface = {source}",
        f"  tls_verify_certificates = {ca}", "  tls_verify_cert_hostnames =",
        f"  tls_sni = {edge.hostname(endpoint)}",
        # Exim falls back to the clear after a failed handshake only when told; it never is here
        "  hosts_require_tls = *",
    ]
    if login:
        transport.append("  hosts_require_auth = *")
    if certificate:
        transport += [f"  tls_certificate = {certificate[0]}", f"  tls_privatekey = {certificate[1]}"]
    lines = [
        "primary_hostname = mfp.lab.test", f"spool_directory = {spool}", f"log_file_path = {spool}/%slog",
        "keep_environment =",
        "begin routers", "edge:", "  driver = manualroute", "  domains = *", "  transport = to_edge",
        f"  route_list = * {host}", "  self = send",
        "begin transports", "to_edge:", *transport,
        "begin authenticators", "login:", "  driver = plaintext", "  public_name = LOGIN",
        f"  client_send = : {SCANNER} : Scan-2026!",
    ]
    config = tmp_path / "exim.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def send_with_exim(exim: str, config: Path, sender: str, recipients: list[str], tag: str) -> str:
    message = (f"From: {sender}\nTo: {', '.join(recipients)}\nSubject: scan {tag}\n"
               f"Message-ID: <{tag}@mfp.lab.test>\n\nScanned page {tag}.\n").encode()
    result = subprocess.run([exim, "-C", str(config), "-odf", "-oi", "-f", sender, *recipients],
                            input=message, capture_output=True, timeout=60, check=False)
    log = (config.parent / "spool" / "mainlog").read_text(errors="replace")
    assert result.returncode == 0 and " Completed" in log, f"{result.stderr!r}\n{log}"
    return log


def came_by_bdat(edge, since: int) -> bool:
    return any(e.kind == "command" and e.line.upper().startswith("BDAT ")
               for e in edge.records.events(since))


def test_exim_submits_with_auth_login_over_bdat(edge, exim, exim_dir):
    mark = edge.records.mark()
    config = exim_config(exim_dir, edge, "submission", login=True)
    send_with_exim(exim, config, SCANNER, ["alice@contoso.com", "partner@example.org"], "sub1")
    placed = sorted((m.folder, m.recipient) for m in edge.store.messages())
    assert placed == [("Inbox", "alice@contoso.com"), ("Outbound", "partner@example.org"),
                      ("Sent Items", SCANNER)]
    assert came_by_bdat(edge, mark)


def test_exim_direct_send_to_the_mx(edge, exim, exim_dir):
    mark = edge.records.mark()
    config = exim_config(exim_dir, edge, "mx", source="127.0.0.10")
    send_with_exim(exim, config, SCANNER, ["alice@contoso.com", "bob@contoso.com"], "ds1")
    placed = sorted((m.folder, m.recipient) for m in edge.store.messages())
    assert placed == [("Inbox", "alice@contoso.com"), ("Inbox", "bob@contoso.com")]
    assert came_by_bdat(edge, mark)


def test_exim_relays_through_the_ip_connector(edge, exim, exim_dir):
    mark = edge.records.mark()
    config = exim_config(exim_dir, edge, "mx", source="127.0.0.20")
    send_with_exim(exim, config, "alerts@contoso.com", ["partner@example.org"], "ip1")
    assert [(m.folder, m.recipient) for m in edge.store.messages()] == [("Outbound", "partner@example.org")]
    assert came_by_bdat(edge, mark)


def test_exim_relays_through_the_certificate_connector(edge, exim, exim_dir):
    mark = edge.records.mark()
    cert, key = edge.ca.client_certificate("relay.contoso.com", exim_dir / "cert")
    (exim_dir / "cert").chmod(0o755)
    key.chmod(0o644)  # read by Exim's delivery process, which does not run as root
    config = exim_config(exim_dir, edge, "mx", source="127.0.0.30", certificate=(cert, key))
    send_with_exim(exim, config, "alerts@contoso.com", ["partner@example.org"], "cert1")
    assert [(m.folder, m.recipient) for m in edge.store.messages()] == [("Outbound", "partner@example.org")]
    tls = [e for e in edge.records.window(mark) if e.kind == "tls"]
    assert tls and tls[-1].client_certificate == ("relay.contoso.com",)
    assert came_by_bdat(edge, mark)
