"""The lab's login.microsoftonline.com accepts what Microsoft accepts and refuses what it refuses,
with Microsoft's codes and body fields: scopes as devices write them, ROPC, public and confidential
clients, single-tenant apps on /common, the device flow's codes, the error shape and its headers.
MSAL where a device would use it, raw HTTP for every error."""

from __future__ import annotations

import html

import pytest

msal = pytest.importorskip("msal", reason="MSAL is a test extra: pip install -e '.[test]'")
import requests  # noqa: E402  (MSAL brings it)

from tests.adapters.test_identity import (  # noqa: E402
    DEVICE_APP,
    SCANNER,
    SERVICE_APP,
    SERVICE_SECRET,
    authority,
    http,
    person_signs_in,
    xoauth2,
)
from tests.conftest import overrides  # noqa: E402

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def signed_in(edge, scope: str) -> dict:
    """A device code for ``scope``, the person signs in, the device redeems it (raw HTTP)."""
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP, "scope": scope})
    assert code.status_code == 200, code.text
    person_signs_in(edge, code.json()["user_code"])
    return session.post(f"{base}/token", data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_APP,
                                               "device_code": code.json()["device_code"]}).json()


@pytest.mark.parametrize("scope", [
    "https://outlook.office365.com/SMTP.Send offline_access",  # the other identifier URI, common in manuals
    "https://outlook.office.com/.default offline_access",  # the app's configured Exchange permissions
    "https://outlook.office.com/smtp.send offline_access",  # scopes are not case-sensitive
    "https://outlook.office.com/SMTP.Send https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
])
def test_scopes_microsoft_accepts_give_a_token_smtp_accepts(edge, scope):
    tokens = signed_in(edge, scope)
    assert "access_token" in tokens, tokens
    assert "SMTP.Send" in tokens["scope"] and "refresh_token" in tokens
    assert xoauth2(edge, SCANNER, tokens["access_token"]) == "235 2.7.0 Authentication successful"


def test_a_bare_smtp_send_is_graphs_and_its_token_is_refused_at_smtp(edge):
    tokens = signed_in(edge, "SMTP.Send offline_access")
    assert tokens["scope"].startswith("https://graph.microsoft.com/SMTP.Send")
    assert xoauth2(edge, SCANNER, tokens["access_token"]).startswith("535 5.7.3 Authentication unsuccessful")


def test_an_unknown_exchange_permission_is_aadsts70011(edge):
    answer = http(edge).post(authority(edge) + "/oauth2/v2.0/devicecode", data={
        "client_id": DEVICE_APP, "scope": "https://outlook.office.com/Mail.Teleport"})
    assert answer.status_code == 400 and answer.json()["error_codes"] == [70011]


@pytest.mark.parametrize("scope", ["https://outlook.office365.com/.default", "https://outlook.office.com/.default"])
def test_app_only_default_scope_by_either_identifier(edge, scope):
    app = msal.ConfidentialClientApplication(SERVICE_APP, client_credential=SERVICE_SECRET, authority=authority(edge),
                                             http_client=http(edge), validate_authority=False,
                                             instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[scope])
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"


class _DefaultPort(requests.Session):
    """MSAL asks ``https://{host}/common/userrealm/...`` without the authority's port (it is 443 at
    Microsoft and in a lab): here, where the identity endpoint has an ephemeral port, put it back."""

    def __init__(self, edge) -> None:
        super().__init__()
        self.lab = http(edge)
        self.host, self.port = edge.addresses["identity"]

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        url = url.replace(f"https://{self.host}/", f"https://{self.host}:{self.port}/")
        return self.lab.request(method, url, *args, **kwargs)


def ropc_app(edge):
    return msal.PublicClientApplication(DEVICE_APP, authority=authority(edge), http_client=_DefaultPort(edge),
                                        validate_authority=False, instance_discovery=False)


def ropc(app, password: str) -> dict:
    # MSAL warns that ROPC is deprecated for public clients: Microsoft still serves it
    with pytest.warns(DeprecationWarning, match="deprecated for public client flows"):
        return app.acquire_token_by_username_password(SCANNER, password,
                                                      scopes=["https://outlook.office.com/SMTP.Send"])


def test_ropc_works_for_a_work_account_without_mfa_and_is_refused_with_it(edge):
    app = ropc_app(edge)
    result = ropc(app, "Scan-2026!")
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"
    wrong = ropc(app, "nope")
    assert wrong["error"] == "invalid_grant" and wrong["error_codes"] == [50126]
    overrides(edge, mailboxes={SCANNER: {"mfa_required": True}})
    mfa = ropc(app, "Scan-2026!")
    assert mfa["error"] == "invalid_grant" and mfa["error_codes"] == [50076]
    assert mfa["suberror"] == "basic_action"  # the person can satisfy it interactively


def test_an_app_without_public_client_flows_must_prove_itself_on_every_grant(edge):
    overrides(edge, apps={DEVICE_APP: {"public_client": False}})
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP, "scope": "https://outlook.office.com/SMTP.Send"})
    assert code.status_code == 200  # the device code is given; redeeming it needs a credential
    person_signs_in(edge, code.json()["user_code"])
    polled = session.post(f"{base}/token", data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_APP,
                                                 "device_code": code.json()["device_code"]})
    assert polled.status_code == 401 and polled.json()["error_codes"] == [7000218]
    ropc = session.post(f"{base}/token", data={"grant_type": "password", "client_id": DEVICE_APP, "username": SCANNER,
                                               "password": "Scan-2026!", "scope": "https://outlook.office.com/SMTP.Send"})
    assert ropc.json()["error"] == "invalid_client" and ropc.json()["error_codes"] == [7000218]


def test_a_confidential_apps_refresh_token_needs_its_secret(edge):
    overrides(edge, apps={SERVICE_APP: {"redirect_uris": ["http://localhost"]}})
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    tokens = session.post(f"{base}/token", data={
        "grant_type": "password", "client_id": SERVICE_APP, "client_secret": SERVICE_SECRET, "username": SCANNER,
        "password": "Scan-2026!", "scope": "https://outlook.office.com/SMTP.Send offline_access"}).json()
    assert "refresh_token" in tokens, tokens
    bare = session.post(f"{base}/token", data={"grant_type": "refresh_token", "client_id": SERVICE_APP,
                                               "refresh_token": tokens["refresh_token"]})
    assert bare.json()["error_codes"] == [7000218]
    proved = session.post(f"{base}/token", data={"grant_type": "refresh_token", "client_id": SERVICE_APP,
                                                 "client_secret": SERVICE_SECRET,
                                                 "refresh_token": tokens["refresh_token"]})
    assert "access_token" in proved.json()


@pytest.mark.parametrize("alias", ["common", "organizations"])
def test_a_single_tenant_app_is_refused_on_common_and_organizations(edge, alias):
    host, port = edge.addresses["identity"]
    url = f"https://{host}:{port}/{alias}/oauth2/v2.0/devicecode"
    form = {"client_id": DEVICE_APP, "scope": "https://outlook.office.com/SMTP.Send"}
    refused = http(edge).post(url, data=form)
    assert refused.status_code == 400 and refused.json()["error_codes"] == [50194]
    assert "is not configured as a multi-tenant application" in refused.json()["error_description"]
    overrides(edge, apps={DEVICE_APP: {"multi_tenant": True}})
    assert http(edge).post(url, data=form).status_code == 200


def test_client_credentials_need_the_tenant_in_the_path(edge):
    overrides(edge, apps={SERVICE_APP: {"multi_tenant": True}})
    host, port = edge.addresses["identity"]
    answer = http(edge).post(f"https://{host}:{port}/common/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": SERVICE_APP, "client_secret": SERVICE_SECRET,
        "scope": "https://outlook.office365.com/.default"})
    assert answer.status_code == 400 and answer.json()["error_codes"] == [9001023]


def test_device_flow_codes_and_an_expired_code_stays_expired(edge):
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    wrong = session.post(f"{base}/token", data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_APP,
                                                "device_code": "not-a-device-code"})
    assert wrong.json()["error"] == "bad_verification_code" and wrong.json()["error_codes"] == [70018]
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP,
                                                    "scope": "https://outlook.office.com/SMTP.Send"}).json()
    edge.on_loop(lambda: setattr(edge, "clock_offset", 901.0))  # the service's clock passes the 900 s
    try:
        for _ in range(2):  # and a second poll after expiry hears the same
            late = session.post(f"{base}/token", data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_APP,
                                                       "device_code": code["device_code"]}).json()
            assert late["error"] == "expired_token" and late["error_codes"] == [70020]
    finally:
        edge.on_loop(lambda: setattr(edge, "clock_offset", 0.0))


def test_every_answer_has_the_platforms_error_fields_and_headers(edge):
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    answer = session.post(f"{base}/token", data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_APP})
    body = answer.json()
    assert answer.status_code == 400 and body["error_codes"] == [900144]
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=900144"
    assert answer.headers["Cache-Control"] == "no-store, no-cache" and answer.headers["Pragma"] == "no-cache"
    got = session.get(f"{base}/token")
    assert got.status_code == 400 and got.headers["Content-Type"].startswith("application/json")
    assert got.json()["error"] == "invalid_request" and got.json()["error_codes"] == [900561]


# Microsoft's access token claims reference (entra-docs access-token-claims-reference.md), v1.0
V1_DELEGATED = {"aud", "iss", "iat", "nbf", "exp", "acr", "amr", "app_displayname", "appid", "appidacr", "idtyp",
                "name", "oid", "scp", "sub", "tid", "unique_name", "upn", "uti", "ver"}
V1_APP = {"aud", "iss", "iat", "nbf", "exp", "app_displayname", "appid", "appidacr", "idp", "idtyp", "oid", "roles",
          "sub", "tid", "uti", "ver"}


def test_exchange_tokens_have_microsofts_v1_claims_and_the_key_set_its_certificate(edge):
    import base64

    import jwt
    from cryptography import x509

    overrides(edge, mailboxes={SCANNER: {"display_name": "Scanner 3rd floor"}})
    tokens = signed_in(edge, "https://outlook.office.com/SMTP.Send offline_access openid profile")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    tenant_id = edge.tokens.tenant_id
    assert claims.keys() >= V1_DELEGATED, V1_DELEGATED - claims.keys()
    assert not {"preferred_username", "jti"} & claims.keys()  # v2 and generic claims Exchange's tokens lack
    assert claims["ver"] == "1.0" and claims["iss"] == f"https://sts.windows.net/{tenant_id}/"
    assert claims["aud"] == "https://outlook.office.com" and claims["scp"] == "SMTP.Send"
    assert claims["appid"] == DEVICE_APP and claims["appidacr"] == "0" and claims["idtyp"] == "user"
    assert claims["upn"] == claims["unique_name"] == SCANNER and claims["name"] == "Scanner 3rd floor"
    id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert id_claims["name"] == "Scanner 3rd floor" and id_claims["ver"] == "2.0"
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["x5t"] == header["kid"] and header["typ"] == "JWT"
    keys = http(edge).get(authority(edge) + "/discovery/v2.0/keys").json()["keys"]
    (key,) = [k for k in keys if k["kid"] == header["kid"]]
    certificate = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    jwt.decode(tokens["access_token"], certificate.public_key(), algorithms=["RS256"],
               audience="https://outlook.office.com")  # verifies with the published certificate
    app = msal.ConfidentialClientApplication(SERVICE_APP, client_credential=SERVICE_SECRET, authority=authority(edge),
                                             http_client=http(edge), validate_authority=False,
                                             instance_discovery=False)
    app_token = app.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])["access_token"]
    app_claims = jwt.decode(app_token, options={"verify_signature": False})
    assert app_claims.keys() >= V1_APP, V1_APP - app_claims.keys()
    assert app_claims["roles"] == ["SMTP.SendAsApp"] and app_claims["idtyp"] == "app"
    assert app_claims["appidacr"] == "1" and app_claims["sub"] == app_claims["oid"]


def test_mkt_localises_the_device_code_message_and_the_login_page(edge):
    session = http(edge)
    german = session.post(authority(edge) + "/oauth2/v2.0/devicecode?mkt=de-DE",
                          data={"client_id": DEVICE_APP, "scope": "https://outlook.office.com/SMTP.Send"}).json()
    code = german["user_code"]
    assert german["message"] == ("Verwenden Sie zum Anmelden einen Webbrowser, um die Seite "
                                 f"https://www.microsoft.com/link zu öffnen, und geben Sie den Code {code} "
                                 "ein, um sich zu authentifizieren.")
    english = session.post(authority(edge) + "/oauth2/v2.0/devicecode",
                           data={"client_id": DEVICE_APP, "scope": "https://outlook.office.com/SMTP.Send"}).json()
    assert english["message"].startswith("To sign in, use a web browser to open the page")
    host, port = edge.addresses["identity"]
    link = http(edge, "www.microsoft.com")
    page = link.get(f"https://{host}:{port}/link?mkt=de-DE").text
    assert '<html lang="de">' in page and "Code eingeben" in page and "Kennwort" in page
    by_browser = link.get(f"https://{host}:{port}/link", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert "Code eingeben" in by_browser.text
    assert "Enter code" in link.get(f"https://{host}:{port}/link").text
    done = link.post(f"https://{host}:{port}/link", data={"otc": german["user_code"], "login": SCANNER,
                                                          "password": "Scan-2026!", "mkt": "de"}).text
    assert "Sie haben sich beim Gerät angemeldet" in done


def test_smart_lockout_after_ten_wrong_passwords_for_a_minute(edge):
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"

    def ropc(password: str) -> dict:
        return session.post(f"{base}/token", data={
            "grant_type": "password", "client_id": DEVICE_APP, "username": SCANNER, "password": password,
            "scope": "https://outlook.office.com/SMTP.Send"}).json()

    assert [ropc("guess")["error_codes"] for _ in range(10)] == [[50126]] * 10
    assert ropc("Scan-2026!")["error_codes"] == [50053]  # locked: the right password too
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP,
                                                    "scope": "https://outlook.office.com/SMTP.Send"}).json()
    assert "AADSTS50053" in person_signs_in(edge, code["user_code"])  # the login page says so too
    edge.on_loop(lambda: setattr(edge, "clock_offset", 61.0))  # a minute later
    try:
        assert "access_token" in ropc("Scan-2026!")
    finally:
        edge.on_loop(lambda: setattr(edge, "clock_offset", 0.0))


def test_a_device_asking_for_the_resource_qualified_office365_scope_passes_the_oauth_cases(edge):
    """Device manuals write https://outlook.office365.com/SMTP.Send: Microsoft grants it, so the
    catalog passes such a device (the reference device with that one setting changed)."""
    from dataclasses import replace
    from pathlib import Path

    from harness.reference import PROFILES, ReferenceSender
    from harness.runner import Runner, Verdict
    from harness.scenario import load_catalog

    profile = replace(PROFILES["oauth-device"], name="oauth-device-office365", behaviour=replace(
        PROFILES["oauth-device"].behaviour, oauth_scope="https://outlook.office365.com/SMTP.Send offline_access"))
    catalog = load_catalog(Path(__file__).resolve().parents[2] / "scenarios")
    runner = Runner(edge, ReferenceSender(profile))
    for case_id in ("oauth/device-code-then-xoauth2", "oauth/token-for-exchange-not-graph",
                    "oauth/access-token-expires-mid-run"):
        (case,) = [c for c in catalog if c.id == case_id]
        result = runner.run(case)
        assert result.verdict == Verdict.PASS, (case_id, result.reason)


def test_the_login_page_blocks_a_source_that_guesses_codes_and_says_the_same_for_live_and_dead(edge):
    """Eight letters are guessable: after ten wrong codes from one address the page takes no code
    for a minute, a live one neither, and its answer does not tell live codes from dead ones."""
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    live = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP,
                                                    "scope": "https://outlook.office.com/SMTP.Send"}).json()
    host, port = edge.addresses["identity"]
    link = http(edge, "www.microsoft.com")

    def typed(code: str, password: str = "Scan-2026!", **extra: str) -> str:
        return html.unescape(link.post(f"https://{host}:{port}/link", data={
            "otc": code, "login": SCANNER, "password": password, **extra}).text)

    wrong = [typed(f"WRONG{n:03d}") for n in range(10)]
    assert all("That code didn't work" in page and "AADSTS70018" in page for page in wrong)
    blocked_live, blocked_dead = typed(live["user_code"]), typed("NOTACODE")
    assert "AADSTS50053" in blocked_live and "IP address" in blocked_live
    assert blocked_live.replace(live["user_code"], "X") == blocked_dead.replace("NOTACODE", "X")
    logins = [e for e in edge.records.events() if e.kind == "identity" and e.endpoint == "device-login"]
    assert [e.aadsts for e in logins[-2:]] == [50053, 50053]
    edge.on_loop(lambda: setattr(edge, "clock_offset", 61.0))  # a minute later the page takes codes again
    try:
        assert "Sie haben sich beim Gerät angemeldet" in typed(live["user_code"], mkt="de")
    finally:
        edge.on_loop(lambda: setattr(edge, "clock_offset", 0.0))


def test_the_login_page_says_its_errors_in_the_pages_language(edge):
    session, base = http(edge), authority(edge) + "/oauth2/v2.0"
    code = session.post(f"{base}/devicecode", data={"client_id": DEVICE_APP,
                                                    "scope": "https://outlook.office.com/SMTP.Send"}).json()
    host, port = edge.addresses["identity"]
    page = http(edge, "www.microsoft.com").post(f"https://{host}:{port}/link?mkt=de-DE", data={
        "otc": code["user_code"], "login": SCANNER, "password": "falsch"}).text
    assert "Ihr Konto oder Kennwort ist falsch." in page
    assert "AADSTS50126: Error validating credentials" in page  # the technical line stays as Microsoft writes it
