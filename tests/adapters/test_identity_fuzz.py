"""Whatever a peer sends the lab's login.microsoftonline.com, the answer is the platform's own: a
page or its JSON error, never an HTTP 500 with a traceback. Generated requests at every endpoint."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

requests = pytest.importorskip("requests", reason="requests comes with MSAL, a test extra")

from tests.adapters.test_identity import DEVICE_APP, SERVICE_APP, http  # noqa: E402
from tests.conftest import overrides  # noqa: E402

PATHS = ["/contoso.com/oauth2/v2.0/token", "/contoso.com/oauth2/v2.0/devicecode", "/common/oauth2/v2.0/token",
         "/organizations/oauth2/v2.0/devicecode", "/nowhere.example/oauth2/v2.0/token", "/link", "/devicelogin",
         "/contoso.com/oauth2/v2.0/authorize", "/contoso.com/v2.0/.well-known/openid-configuration",
         "/contoso.com/discovery/v2.0/keys", "/common/discovery/instance", "/common/userrealm/a@contoso.com"]
FIELDS = ["grant_type", "client_id", "client_secret", "scope", "device_code", "refresh_token", "code", "redirect_uri",
          "code_verifier", "username", "password", "client_assertion", "client_assertion_type", "otc", "login",
          "response_type", "response_mode", "code_challenge", "code_challenge_method", "mkt", "consent", "mfa"]
VALUES = st.one_of(
    st.sampled_from(["client_credentials", "refresh_token", "password", "authorization_code",
                     "urn:ietf:params:oauth:grant-type:device_code", DEVICE_APP, SERVICE_APP,
                     "https://outlook.office.com/SMTP.Send offline_access", "https://outlook.office365.com/.default",
                     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "http://localhost:8400/",
                     "http://evil.example\\@localhost:8/", "eyJhbGciOiJSUzI1NiJ9.e30.x", "code", "form_post", "S256"]),
    st.text(max_size=80),
)
CONTENT_TYPES = [None, "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=bogus",
                 "application/x-www-form-urlencoded; charset=utf-16", "multipart/form-data; boundary=zz",
                 "text/plain", "application/json"]


@st.composite
def requests_to_the_platform(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | dict[str, str]]:
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST"]))
    path = draw(st.sampled_from(PATHS))
    headers = {}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        raw = draw(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
        headers["Authorization"] = "Basic " + draw(st.sampled_from([base64.b64encode(raw).decode(), raw.hex(), "%%%"]))
    if draw(st.booleans()):
        body: bytes | dict[str, str] = draw(st.binary(max_size=200))
    else:
        body = draw(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8))
    return method, path, headers, body


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests_to_the_platform())
def test_no_request_makes_the_platform_answer_500(exo_edge, request):
    method, path, headers, body = request
    host, port = exo_edge.addresses["identity"]
    session = http(exo_edge)
    answer = session.request(method, f"https://{host}:{port}{path}", data=body, headers=headers, timeout=10,
                             allow_redirects=False)
    assert answer.status_code < 500, (method, path, headers, body, answer.text[:300])


def test_a_signed_assertion_with_a_string_exp_is_refused_not_a_crash(edge):
    import jwt
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    rsa = trustme.KeyType.RSA
    issued = trustme.CA(key_type=rsa).issue_cert("reminder-service.contoso.com", key_type=rsa)
    certificate = issued.cert_chain_pems[0].bytes().decode()
    overrides(edge, apps={SERVICE_APP: {"certificate": certificate}})
    der = x509.load_pem_x509_certificate(certificate.encode()).public_bytes(Encoding.DER)
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324
    host, port = edge.addresses["identity"]
    token_url = f"https://{host}:{port}/contoso.com/oauth2/v2.0/token"

    def assertion(**claims: object) -> str:
        base = {"iss": SERVICE_APP, "sub": SERVICE_APP, "aud": token_url, "jti": str(time.monotonic_ns()),
                "nbf": int(time.time()), "exp": int(time.time()) + 300}
        return jwt.encode({**base, **claims}, issued.private_key_pem.bytes(), algorithm="RS256",
                          headers={"x5t": thumbprint})

    def redeem(signed: str) -> requests.Response:
        return http(edge).post(token_url, data={
            "grant_type": "client_credentials", "client_id": SERVICE_APP,
            "scope": "https://outlook.office365.com/.default", "client_assertion": signed,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})

    assert redeem(assertion(exp="soon")).json()["error_codes"] == [700027]
    good = assertion()
    assert "access_token" in redeem(good).json()
    assert redeem(good).json()["error_codes"] == [700027]  # an assertion is used once
    ten_years = assertion(exp=int(time.time()) + 10 * 365 * 86400)
    assert redeem(ten_years).json()["error_codes"] == [700027]
    elsewhere = assertion(aud="https://evil.example/contoso.com/oauth2/v2.0/token")
    assert redeem(elsewhere).json()["error_codes"] == [700027]
