"""The lab's login.microsoftonline.com over real HTTPS, driven by MSAL (Microsoft's own OAuth
library for Python) as a device's app would, then the token used for AUTH XOAUTH2."""

from __future__ import annotations

import pytest

# MSAL (and requests, which it brings) come with the test extras; without them (`pytest -m
# scenario` after the README's first command) this module is skipped rather than breaking collection.
msal = pytest.importorskip("msal", reason="MSAL is a test extra: pip install -e '.[test]'")
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from fakes.exo.tokens import xoauth2_payload  # noqa: E402
from tests.helpers import Device  # noqa: E402

SCANNER, ALICE = "scanner@contoso.com", "alice@contoso.com"
DEVICE_APP = "00000000-0000-0000-0000-00000000d3c0"
SERVICE_APP, SERVICE_SECRET = "00000000-0000-0000-0000-00000000a11c", "App-Secret-2026~lab"
SMTP_SCOPE = ["https://outlook.office.com/SMTP.Send"]


class LabNames(HTTPAdapter):
    """HTTPS to the edge's address, naming login.microsoftonline.com (SNI and certificate check), as
    a device whose DNS is the lab's would: this machine's resolver does not know the lab names."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        kwargs["server_hostname"] = self.name
        kwargs["assert_hostname"] = self.name
        return super().init_poolmanager(*args, **kwargs)


def http(edge, name: str = "login.microsoftonline.com") -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would win over verify=
    session.verify = str(edge.ca.cert_path)  # the lab root alone
    session.mount("https://", LabNames(name))
    return session


def authority(edge) -> str:
    host, port = edge.addresses["identity"]
    return f"https://{host}:{port}/contoso.com"


def device_app(edge) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(DEVICE_APP, authority=authority(edge), http_client=http(edge),
                                        validate_authority=False, instance_discovery=False)


def xoauth2(edge, user: str, token: str) -> str:
    with Device(edge) as device:
        device.secure()
        return device.reply("AUTH XOAUTH2 " + xoauth2_payload(user, token))


def person_signs_in(edge, user_code: str, *, password: str = "Scan-2026!", consent: str = "accept") -> str:
    host, port = edge.addresses["identity"]
    page = http(edge, "www.microsoft.com").post(
        f"https://{host}:{port}/link", data={"otc": user_code, "login": SCANNER, "password": password,
                                             "consent": consent}, timeout=10)
    return page.text


def test_device_code_flow_with_msal_then_xoauth2(edge):
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    assert flow["verification_uri"] == "https://www.microsoft.com/link" and flow["interval"] == 5
    assert flow["message"] == (f"To sign in, use a web browser to open the page https://www.microsoft.com/link "
                               f"and enter the code {flow['user_code']} to authenticate.")
    # the person at the device signs in on the login page; MSAL's next poll gets the tokens
    assert "You have signed in to the device" in person_signs_in(edge, flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == SCANNER
    assert "refresh_token" in result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"


def test_polling_before_sign_in_is_authorization_pending_with_microsofts_error_shape(edge):
    session = http(edge)
    base = authority(edge) + "/oauth2/v2.0"
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP, "scope": " ".join(SMTP_SCOPE)}).json()
    answer = session.post(f"{base}/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                 "client_id": DEVICE_APP, "device_code": code["device_code"]})
    body = answer.json()
    assert answer.status_code == 400 and body["error"] == "authorization_pending" and body["error_codes"] == [70016]
    assert body["error_description"].startswith("AADSTS70016: The provided request has not yet been authorized")
    assert "\r\nTrace ID: " in body["error_description"] and body["trace_id"] and body["correlation_id"]
    page = person_signs_in(edge, code["user_code"], consent="decline")
    assert "You declined to sign in" in page
    declined = session.post(f"{base}/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                   "client_id": DEVICE_APP, "device_code": code["device_code"]})
    assert declined.json()["error"] == "authorization_declined"


def test_a_wrong_password_on_the_login_page_is_aadsts50126_and_the_code_still_waits(edge):
    session = http(edge)
    base = authority(edge) + "/oauth2/v2.0"
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP, "scope": " ".join(SMTP_SCOPE)}).json()
    assert "AADSTS50126: Error validating credentials" in person_signs_in(edge, code["user_code"], password="nope")
    assert "You have signed in" in person_signs_in(edge, code["user_code"])


def test_refresh_tokens_rotate_and_an_old_one_still_works_until_revoked(edge):
    """Microsoft "doesn't revoke old refresh tokens when used to fetch new access tokens": a device
    that lost the rotated one at power-off still refreshes with the one it kept."""
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    person_signs_in(edge, flow["user_code"])
    first = app.acquire_token_by_device_flow(flow)
    again = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert "access_token" in again and again["refresh_token"] != first["refresh_token"]
    replayed = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert "access_token" in replayed, replayed
    assert xoauth2(edge, SCANNER, replayed["access_token"]) == "235 2.7.0 Authentication successful"
    assert edge.on_loop(lambda: edge.identity.revoke(SCANNER)) == 3  # an administrator revokes the sessions
    for token in (first["refresh_token"], again["refresh_token"]):
        revoked = app.acquire_token_by_refresh_token(token, scopes=SMTP_SCOPE)
        assert revoked["error"] == "invalid_grant" and revoked["error_codes"] == [50173]
        assert revoked["suberror"] == "bad_token"  # MSAL drops the refresh token it sent on this
    garbage = app.acquire_token_by_refresh_token("not-a-refresh-token", scopes=SMTP_SCOPE)
    assert garbage["error"] == "invalid_grant" and garbage["error_codes"] == [9002313]
    assert "suberror" not in garbage


def test_client_credentials_for_send_as_app_with_msal(edge):
    app = msal.ConfidentialClientApplication(SERVICE_APP, client_credential=SERVICE_SECRET,
                                             authority=authority(edge), http_client=http(edge),
                                             validate_authority=False, instance_discovery=False)
    result = app.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"
    assert xoauth2(edge, ALICE, result["access_token"]).startswith("535 5.7.3 Authentication unsuccessful")


@pytest.mark.parametrize(("form", "status", "error", "code"), [
    ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", 700016),
    ({"client_id": SERVICE_APP, "client_secret": "guess"}, 401, "invalid_client", 7000215),
    ({"client_id": SERVICE_APP}, 401, "invalid_client", 7000218),  # no secret at all
    ({"client_id": SERVICE_APP, "client_secret": SERVICE_SECRET, "scope": "https://outlook.office.com/SMTP.Send"},
     400, "invalid_scope", 1002012),  # a delegated scope in an app-only request
    ({"client_id": SERVICE_APP, "client_secret": SERVICE_SECRET, "scope": "https://example.org/.default"},
     400, "invalid_scope", 70011),
])
def test_client_credential_errors_use_the_platforms_codes(edge, form, status, error, code):
    answer = http(edge).post(authority(edge) + "/oauth2/v2.0/token",
                             data={"grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default",
                                   **form})
    assert answer.status_code == status
    assert answer.json()["error"] == error and answer.json()["error_codes"] == [code]


def test_discovery_names_the_endpoints_and_the_keys_verify_the_tokens(edge):
    import jwt

    session = http(edge)
    config = session.get(authority(edge) + "/v2.0/.well-known/openid-configuration").json()
    tenant_id = edge.tokens.tenant_id  # named by its id, never by the domain in the path
    assert config["device_authorization_endpoint"].endswith(f"/{tenant_id}/oauth2/v2.0/devicecode")
    assert config["issuer"] == f"https://login.microsoftonline.com/{tenant_id}/v2.0"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert {"userinfo_endpoint", "end_session_endpoint", "response_modes_supported"} <= config.keys()
    assert not {"grant_types_supported", "code_challenge_methods_supported"} & config.keys()  # Entra has neither
    host, port = edge.addresses["identity"]
    forged = session.get(authority(edge) + "/v2.0/.well-known/openid-configuration",
                         headers={"Host": "evil.example"}).json()
    assert forged["token_endpoint"].startswith(f"https://{host}:{port}/")  # the Host header is not echoed
    common = session.get(f"https://{host}:{port}/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == "https://login.microsoftonline.com/{tenantid}/v2.0"
    keys = session.get(config["jwks_uri"]).json()
    token = edge.mint_token(SCANNER)
    signing = jwt.PyJWKSet.from_dict(keys)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, signing.key, algorithms=["RS256"], audience="https://outlook.office.com")
    assert claims["upn"] == SCANNER
    assert session.get(authority(edge).replace("contoso.com", "fabrikam.com")
                       + "/v2.0/.well-known/openid-configuration").json()["error_codes"] == [90002]


def test_the_lab_dns_names_the_identity_platform(edge):
    for name in ("login.microsoftonline.com", "www.microsoft.com", "microsoft.com"):
        assert edge.zone.lookup(name, "A").records == (("A", "127.0.0.1"),)
