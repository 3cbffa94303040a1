"""swaks as a device doing direct send and certificate relay against the tenant MX."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.interop


def swaks_mx(swaks: str, edge, source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    host, port = edge.addresses["mx"]
    return subprocess.run(
        [swaks, "--server", host, "--port", str(port), "--local-interface", source, "--helo", "mfp.lab", *extra],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_swaks_direct_send_without_auth(edge, swaks):
    result = swaks_mx(swaks, edge, "127.0.0.10", "--from", "scanner@contoso.com", "--to", "alice@contoso.com")
    assert result.returncode == 0, result.stdout
    assert "AUTH" not in result.stdout.split("~> MAIL")[0].split("EHLO")[-1]
    (copy,) = edge.store.messages(mailbox="alice@contoso.com")
    assert (copy.folder, copy.spf) == ("Inbox", "pass")


def test_swaks_direct_send_to_an_external_recipient(edge, swaks):
    result = swaks_mx(swaks, edge, "127.0.0.10", "--from", "scanner@contoso.com", "--to", "partner@example.org")
    assert result.returncode != 0
    assert "550 5.7.64 TenantAttribution; Relay Access Denied" in result.stdout


def test_swaks_relay_with_a_client_certificate(edge, swaks, tmp_path):
    cert, key = edge.ca.client_certificate("relay.contoso.com", tmp_path)
    result = swaks_mx(
        swaks, edge, "127.0.0.30", "--tls", "--tls-cert", str(cert), "--tls-key", str(key),
        "--tls-verify", "--tls-ca-path", str(edge.ca.cert_path), "--tls-sni", edge.tenant.mx_host,
        "--from", "scanner@contoso.com", "--to", "partner@example.org",
    )
    assert result.returncode == 0, result.stdout
    assert [m.folder for m in edge.store.messages()] == ["Outbound"]


def test_swaks_relay_with_a_certificate_for_the_wrong_domain(edge, swaks, tmp_path):
    cert, key = edge.ca.client_certificate("printer.fabrikam.com", tmp_path)
    result = swaks_mx(
        swaks, edge, "127.0.0.30", "--tls", "--tls-cert", str(cert), "--tls-key", str(key),
        "--from", "scanner@contoso.com", "--to", "partner@example.org",
    )
    assert "550 5.7.64 TenantAttribution; Relay Access Denied" in result.stdout
    assert edge.store.messages() == []
