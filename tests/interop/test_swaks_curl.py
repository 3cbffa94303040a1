"""Real third-party SMTP clients against the running edge: swaks (AUTH LOGIN, TLS pinning), curl (XOAUTH2)."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.interop


def run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def swaks_args(swaks: str, edge, *extra: str) -> list[str]:
    host, port = edge.addresses["submission"]
    return [swaks, "--server", host, "--port", str(port), "--helo", "printer.lab",
            "--from", "scanner@contoso.com", "--to", "alice@contoso.com", *extra]


def test_swaks_submission_with_starttls_and_auth_login(edge, swaks):
    mark = edge.records.mark()
    result = run(swaks_args(
        swaks, edge, "--tls", "--tls-verify", "--tls-ca-path", str(edge.ca.cert_path),
        "--tls-sni", "smtp.office365.com",
        "--auth", "LOGIN", "--auth-user", "scanner@contoso.com", "--auth-password", "Scan-2026!",
    ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 Authentication successful" in result.stdout
    assert "<~  250 2.0.0 OK <" in result.stdout
    assert [m.folder for m in edge.store.messages(mailbox="alice@contoso.com")] == ["Inbox"]
    assert [m.folder for m in edge.store.messages(mailbox="scanner@contoso.com")] == ["Sent Items"]
    events = edge.records.window(mark)
    assert [e.version for e in events if e.kind == "tls"][0] in ("TLSv1.2", "TLSv1.3")
    assert [(e.mechanism, e.outcome) for e in events if e.kind == "auth"] == [("LOGIN", "success")]
    assert "Scan-2026!" not in edge.records.path.read_text()


def test_swaks_without_tls_is_told_starttls_is_required(edge, swaks):
    result = run(swaks_args(swaks, edge))
    assert result.returncode != 0
    assert "451 5.7.3 STARTTLS is required to send mail [" in result.stdout


def test_swaks_auth_plain_is_unrecognized(edge, swaks):
    result = run(swaks_args(swaks, edge, "--tls", "--auth", "PLAIN", "--auth-user", "scanner@contoso.com",
                            "--auth-password", "Scan-2026!"))
    # swaks only tries what EHLO advertised: PLAIN is not, so it gives up before AUTH
    assert result.returncode != 0
    assert "250-AUTH LOGIN XOAUTH2" in result.stdout
    assert edge.store.messages() == []


def test_swaks_pinned_to_tls_1_0_gets_4_7_66(edge, swaks):
    result = run(swaks_args(swaks, edge, "--tls", "--tls-protocol", "tlsv1",
                            "--tls-cipher", "DEFAULT:@SECLEVEL=0"))
    assert "421 4.7.66 TLS 1.0 and 1.1 are not supported." in result.stdout
    assert any(e.kind == "tls" and e.version == "TLSv1" for e in edge.records.events())


def test_swaks_wrong_password(edge, swaks):
    result = run(swaks_args(swaks, edge, "--tls", "--auth", "LOGIN", "--auth-user", "scanner@contoso.com",
                            "--auth-password", "nope"))
    assert "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. [" in result.stdout


def curl_submit(curl: str, edge, tmp_path, token: str) -> subprocess.CompletedProcess[str]:
    host, port = edge.addresses["submission"]
    body = tmp_path / "mail.eml"
    body.write_bytes(b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: curl\r\n\r\nhi\r\n")
    return run([
        curl, "-sS", "-v", "--url", f"smtp://smtp.office365.com:{port}", "--resolve",
        f"smtp.office365.com:{port}:{host}", "--ssl-reqd", "--cacert", str(edge.ca.cert_path),
        "--mail-from", "scanner@contoso.com", "--mail-rcpt", "alice@contoso.com",
        "--user", "scanner@contoso.com", "--oauth2-bearer", token, "-T", str(body),
    ])


def test_curl_xoauth2_with_a_token_from_the_edge(edge, curl, tmp_path):
    result = curl_submit(curl, edge, tmp_path, edge.mint_token("scanner@contoso.com"))
    assert result.returncode == 0, result.stderr
    assert "< 235 2.7.0 Authentication successful" in result.stderr
    assert [(e.mechanism, e.outcome) for e in edge.records.events()
            if e.kind == "auth"][-1] == ("XOAUTH2", "success")
    assert len(edge.store.messages(mailbox="alice@contoso.com")) == 1


def test_curl_with_an_expired_token_is_refused(edge, curl, tmp_path):
    result = curl_submit(curl, edge, tmp_path, edge.mint_token("scanner@contoso.com", expires_in=-1))
    assert result.returncode != 0
    assert "< 535 5.7.3 Authentication unsuccessful [" in result.stderr
