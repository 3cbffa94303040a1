"""A sign-in read from a capture's opened TLS: the requests and answers of one HTTP/1.1
connection become the identity platform's records, with no credential in them."""

from __future__ import annotations

import json

from harness.capture_http import SignIns

TOKEN_PATH = b"/contoso.com/oauth2/v2.0/token"


def request(form: bytes, path: bytes = TOKEN_PATH) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: login.microsoftonline.com\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(form) + form)


def answer(status: int, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(data)) + data


def test_a_password_grant_is_read_without_the_password_and_its_refusal_with_its_code():
    conn = SignIns("c000009", "10.0.0.9")
    form = b"grant_type=password&client_id=app-1&username=scanner%40contoso.com&password=Scan-2026%21&scope=x"
    first = request(form)
    assert conn.device_sent(first[:40], 1.0) == [] and conn.device_sent(first[40:], 1.0) == []  # cut anywhere
    refusal = answer(400, {"error": "invalid_grant", "error_codes": [50076], "refresh_token": "0.A" + "x" * 80})
    (event,) = conn.platform_sent(refusal, 1.2)
    assert (event.endpoint, event.grant_type, event.outcome, event.aadsts, event.tenant, event.user) == (
        "token", "password", "invalid_grant", 50076, "contoso.com", "scanner@contoso.com")
    assert event.issued is None  # a refusal issues nothing, whatever its body says
    assert "Scan-2026" not in repr(event)


def test_requests_on_one_kept_connection_each_get_their_answer():
    conn = SignIns("c000010", "10.0.0.9")
    conn.device_sent(request(b"client_id=app-1&scope=https%3A%2F%2Foutlook.office365.com%2FSMTP.Send",
                             b"/contoso.com/oauth2/v2.0/devicecode"), 1.0)
    (code,) = conn.platform_sent(answer(200, {"device_code": "DC-1", "interval": 5, "user_code": "ABC"}), 1.1)
    conn.device_sent(request(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=DC-1"
                             b"&client_id=app-1"), 6.2)
    (poll,) = conn.platform_sent(answer(200, {"access_token": "eyJ...", "refresh_token": "0.Aabc"}), 6.3)
    assert (code.endpoint, code.interval, code.flow) == ("devicecode", 5, poll.flow) and poll.flow
    assert poll.outcome == "ok" and poll.issued and "DC-1" not in repr([code, poll])


def test_what_is_not_http_1_1_is_left_alone():
    conn = SignIns("c000011", "10.0.0.9")
    assert conn.device_sent(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", 1.0) == []
    assert conn.platform_sent(b"\x00\x00\x00\x04\x01", 1.1) == [] and conn.broken
