"""``exoedge serve`` as a lab runs it: started with no arguments, used by swaks, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.exo.observed import decode

pytestmark = pytest.mark.interop


def exoedge(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def test_serve_with_no_arguments_then_a_swaks_submission(tmp_path, swaks):
    server = exoedge("serve", cwd=tmp_path)
    try:
        assert server.stdout is not None
        first = json.loads(server.stdout.readline())
        assert set(first) >= {"submission", "submission-25", "legacy", "implicit-tls", "mx", "dns", "ca",
                              "records", "store"}
        assert first["hostnames"]["mx"] == "contoso-com.mail.protection.outlook.com"
        host, port = first["submission"].rsplit(":", 1)
        assert host == "127.0.0.1"
        assert Path(first["ca"]) == tmp_path / "state" / "ca.pem"
        result = subprocess.run(
            [swaks, "--server", host, "--port", port, "--tls", "--tls-verify", "--tls-ca-path", first["ca"],
             "--tls-sni", "smtp.office365.com", "--auth", "LOGIN", "--auth-user", "scanner@contoso.com",
             "--auth-password", "Scan-2026!", "--from", "scanner@contoso.com", "--to", "alice@contoso.com"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.returncode == 0, result.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0, err
    with sqlite3.connect(first["store"]) as db:
        rows = set(db.execute("SELECT mailbox, folder FROM messages"))
    assert rows == {("alice@contoso.com", "Inbox"), ("scanner@contoso.com", "Sent Items")}
    records = [decode(line) for line in Path(first["records"]).read_bytes().splitlines()]  # as the types
    assert any(e.kind == "tls" and e.version in ("TLSv1.2", "TLSv1.3") for e in records)
    assert any(e.kind == "auth" and e.mechanism == "LOGIN" for e in records)
    assert "Scan-2026!" not in Path(first["records"]).read_text()


def test_a_token_from_exoedge_token_works_against_a_running_serve(tmp_path):
    import smtplib

    from fakes.exo.tokens import xoauth2_payload
    from tests.helpers import MESSAGE

    server = exoedge("serve", "--state-dir", "lab", cwd=tmp_path)
    try:
        assert server.stdout is not None
        first = json.loads(server.stdout.readline())
        token = subprocess.run(
            [sys.executable, "-m", "harness.cli", "token", "--mailbox", "scanner@contoso.com",
             "--state-dir", "lab"], cwd=tmp_path, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        ).stdout.strip()
        host, port = first["submission"].rsplit(":", 1)
        import ssl

        with smtplib.SMTP(host, int(port), timeout=10) as client:
            client._host = "smtp.office365.com"  # type: ignore[attr-defined]
            client.starttls(context=ssl.create_default_context(cafile=first["ca"]))
            client.ehlo()
            code, _ = client.docmd("AUTH XOAUTH2", xoauth2_payload("scanner@contoso.com", token))
            assert code == 235
            client.sendmail("scanner@contoso.com", ["alice@contoso.com"],
                            MESSAGE.format(sender="scanner@contoso.com", to="alice@contoso.com", tag="t"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=10)


def test_serve_with_a_bad_tenant_file_says_where_and_binds_nothing(tmp_path):
    bad = tmp_path / "tenant.yaml"
    bad.write_text("schema_version: 1\ntenant: x\naccepted_domains: [x.com]\nmailboxes:\n"
                   "  - address: printer@x.com\n    send_as: [bob]\n")
    server = exoedge("serve", "--tenant", str(bad), cwd=tmp_path)
    out, err = server.communicate(timeout=20)
    assert server.returncode == 2
    assert out == ""
    assert f"{bad}:6: mailboxes[0].send_as[0]='bob': is not an email address" in err
    assert "Traceback" not in err


def test_unknown_port_name_is_a_usage_error(tmp_path):
    server = exoedge("serve", "--port", "smtp=25", cwd=tmp_path)
    _, err = server.communicate(timeout=20)
    assert server.returncode != 0 and "unknown endpoint 'smtp'" in err


def test_connections_past_the_descriptor_limit_hear_421_not_an_accept_storm(tmp_path):
    import resource
    import socket

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    server = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        preexec_fn=few_descriptors,
    )
    clients: list[socket.socket] = []
    try:
        assert server.stdout is not None
        host, port = json.loads(server.stdout.readline())["mx"].rsplit(":", 1)
        banners = []
        for i in range(100):  # ten sources, ten each: under the per-source cap, over the descriptors
            client = socket.create_connection((host, int(port)), timeout=10,
                                              source_address=(f"127.0.0.{100 + i % 10}", 0))
            clients.append(client)
            banners.append(client.recv(4096).decode())
        served = [b for b in banners if b.startswith("220 ")]
        refused = [b for b in banners if b.startswith("421 4.3.2 The maximum number of concurrent connections")]
        assert served and refused and len(served) + len(refused) == 100
        for client in clients:
            client.close()
        clients.clear()
        for _attempt in range(100):  # the slots come back as the edge sees those connections close
            with socket.create_connection((host, int(port)), timeout=10) as again:
                banner = again.recv(4096)
                if banner.startswith(b"220 "):
                    break
                assert again.recv(4096) == b""  # refused, and closed by the edge: try again
        assert banner.startswith(b"220 ")
    finally:
        for client in clients:
            client.close()
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
    assert "Traceback" not in err and "accept" not in err.lower()
