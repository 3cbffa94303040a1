"""The lab identity platform's other ways in, over real HTTPS: authorization code with PKCE
driven by MSAL, Conditional Access asking for a second factor, what a scenario does mid-run
(revoke a sign-in, disable an app), and the device login page completed in headless Chromium
as a person would."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("msal", reason="MSAL is a test extra: pip install -e '.[test]'")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from fakes.exo.events import MidRun  # noqa: E402
from tests.adapters.test_identity import (  # noqa: E402
    DEVICE_APP,
    SCANNER,
    SMTP_SCOPE,
    device_app,
    http,
    person_signs_in,
    xoauth2,
)
from tests.conftest import overrides  # noqa: E402

REDIRECT = "http://localhost:8400/"


class _Form(HTMLParser):
    """The fields of the page's form, as a browser would send them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action") or ""
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""


def _sign_in_on_authorize_page(edge, auth_uri: str, *, password: str = "Scan-2026!", mfa: bool = False):
    host, port = edge.addresses["identity"]
    browser = http(edge)
    page = browser.get(auth_uri, timeout=10)  # MSAL's URI, at the lab authority
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    fields = form.fields | {"login": SCANNER, "password": password, "consent": "accept"}
    if mfa:
        fields["mfa"] = "approved"
    return browser.post(f"https://{host}:{port}{form.action}", data=fields, allow_redirects=False, timeout=10)


def test_authorization_code_with_pkce_driven_by_msal_then_xoauth2(edge):
    app = device_app(edge)
    flow = app.initiate_auth_code_flow(SMTP_SCOPE, redirect_uri=REDIRECT, response_mode="form_post")
    assert "code_challenge=" in flow["auth_uri"] and "code_challenge_method=S256" in flow["auth_uri"]
    answer = _sign_in_on_authorize_page(edge, flow["auth_uri"])
    # form_post: a page whose form posts code and state to the app's redirect URI
    posted = _Form()
    posted.feed(answer.text)
    assert answer.status_code == 200 and posted.action == REDIRECT
    params = posted.fields
    assert params["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"
    # a code is redeemed once
    host, port = edge.addresses["identity"]
    again = http(edge).post(f"https://{host}:{port}/contoso.com/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "authorization_code", "client_id": DEVICE_APP, "code": params["code"],
        "redirect_uri": REDIRECT, "code_verifier": flow["code_verifier"]})
    assert again.status_code == 400 and again.json()["error_codes"] == [70000]


def test_a_code_verifier_that_does_not_match_is_aadsts501481(edge):
    verifier = "a" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    host, port = edge.addresses["identity"]
    uri = (f"https://{host}:{port}/contoso.com/oauth2/v2.0/authorize?client_id={DEVICE_APP}&response_type=code"
           f"&redirect_uri={REDIRECT}&scope=https://outlook.office.com/SMTP.Send&state=s1"
           f"&code_challenge={challenge}&code_challenge_method=S256")
    answer = _sign_in_on_authorize_page(edge, uri)  # response_mode query: a redirect with the code
    assert answer.status_code == 302 and answer.headers["Location"].startswith(REDIRECT + "?")
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    refused = http(edge).post(f"https://{host}:{port}/contoso.com/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "authorization_code", "client_id": DEVICE_APP, "code": code, "redirect_uri": REDIRECT,
        "code_verifier": "b" * 64})
    body = refused.json()
    assert refused.status_code == 400 and body["error"] == "invalid_grant" and body["error_codes"] == [501481]
    assert body["error_description"].startswith("AADSTS501481: The Code_Verifier does not match the code_challenge")


def test_an_unregistered_redirect_uri_is_refused_on_the_page_and_never_redirected_to(edge):
    host, port = edge.addresses["identity"]
    page = http(edge).get(f"https://{host}:{port}/contoso.com/oauth2/v2.0/authorize", timeout=10, params={
        "client_id": DEVICE_APP, "response_type": "code", "redirect_uri": "https://evil.example/cb",
        "scope": "https://outlook.office.com/SMTP.Send"}, allow_redirects=False)
    assert page.status_code == 400
    assert "AADSTS50011: The redirect URI &#39;https://evil.example/cb&#39; specified in the request" in page.text


def test_conditional_access_asks_for_the_second_factor_on_the_sign_in_page(edge):
    overrides(edge, mailboxes={SCANNER: {"mfa_required": True}})
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    page = person_signs_in(edge, flow["user_code"])
    assert "AADSTS50076: Due to a configuration change made by your administrator" in page
    host, port = edge.addresses["identity"]
    done = http(edge, "www.microsoft.com").post(f"https://{host}:{port}/link", timeout=10, data={
        "otc": flow["user_code"], "login": SCANNER, "password": "Scan-2026!", "consent": "accept",
        "mfa": "approved"})
    assert "You have signed in to the device" in done.text
    assert "access_token" in app.acquire_token_by_device_flow(flow)


def _signed_in(edge) -> dict:
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    person_signs_in(edge, flow["user_code"])
    return app.acquire_token_by_device_flow(flow)


def _refresh(edge, refresh_token: str) -> tuple[int, dict]:
    host, port = edge.addresses["identity"]
    answer = http(edge).post(f"https://{host}:{port}/contoso.com/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "refresh_token", "client_id": DEVICE_APP, "refresh_token": refresh_token})
    return answer.status_code, answer.json()


@pytest.mark.parametrize(("step", "status", "code"), [
    (MidRun(revoke_sign_in=SCANNER), 400, 50173),
    (MidRun(disable_app=DEVICE_APP), 400, 7000112),
    (MidRun(require_mfa=SCANNER), 400, 50076),
])
def test_what_a_scenario_does_mid_run_refuses_the_refresh_token(edge, step, status, code):
    tokens = _signed_in(edge)
    edge.on_loop(lambda: edge.do(step))
    answer_status, body = _refresh(edge, tokens["refresh_token"])
    assert (answer_status, body["error_codes"]) == (status, [code])


def test_a_clock_jump_expires_the_access_token_at_the_submission_endpoint(edge):
    tokens = _signed_in(edge)
    edge.on_loop(lambda: edge.do(MidRun(advance_clock=3700)))
    assert xoauth2(edge, SCANNER, tokens["access_token"]).startswith("535 5.7.3 Authentication unsuccessful")
    status, body = _refresh(edge, tokens["refresh_token"])
    assert status == 200
    assert xoauth2(edge, SCANNER, body["access_token"]) == "235 2.7.0 Authentication successful"


def test_a_person_completes_the_device_login_page_in_headless_chromium(edge, tmp_path, chromium):
    from tests.helpers import need

    chromedriver = need("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    host, port = edge.addresses["identity"]
    # the browser trusts exactly the lab's identity certificate, and resolves the names to the edge
    leaf = x509.load_pem_x509_certificate(edge.ca.server_leaf("identity")[0].read_bytes())
    pin = base64.b64encode(hashlib.sha256(leaf.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()).decode()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", f"--ignore-certificate-errors-spki-list={pin}",
                 f"--host-resolver-rules=MAP www.microsoft.com:443 {host}:{port}, EXCLUDE localhost"):
        options.add_argument(flag)
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(flow["verification_uri"])  # https://www.microsoft.com/link, as the device's screen says
        driver.find_element(By.ID, "otc").send_keys(flow["user_code"])
        driver.find_element(By.ID, "login").send_keys(SCANNER)
        driver.find_element(By.ID, "password").send_keys("Scan-2026!")
        driver.find_element(By.ID, "accept").click()
        WebDriverWait(driver, 10).until(until.presence_of_element_located((By.ID, "result")))
        assert driver.find_element(By.ID, "result").text == "You have signed in to the device"
        driver.save_screenshot(str(tmp_path / "signed-in.png"))
    finally:
        driver.quit()
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"


def test_an_app_signs_its_client_assertion_with_its_certificate_driven_by_msal(edge):
    import msal
    import trustme

    from tests.adapters.test_identity import SERVICE_APP

    rsa = trustme.KeyType.RSA  # client assertions are RS256
    issued = trustme.CA(key_type=rsa).issue_cert("reminder-service.contoso.com", key_type=rsa)
    certificate_pem = issued.cert_chain_pems[0].bytes().decode()
    der = x509.load_pem_x509_certificate(certificate_pem.encode()).public_bytes(Encoding.DER)
    overrides(edge, apps=[{"client_id": SERVICE_APP, "name": "Reminder service", "send_as_app": True,
                           "certificate": certificate_pem}])

    def app(key_pem: str) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            SERVICE_APP, authority=f"https://{edge.addresses['identity'][0]}:{edge.addresses['identity'][1]}"
            "/contoso.com", client_credential={"private_key": key_pem, "thumbprint": hashlib.sha1(der).hexdigest()},
            http_client=http(edge), validate_authority=False, instance_discovery=False)

    result = app(issued.private_key_pem.bytes().decode()).acquire_token_for_client(
        ["https://outlook.office365.com/.default"])
    assert "access_token" in result, result
    assert xoauth2(edge, SCANNER, result["access_token"]) == "235 2.7.0 Authentication successful"
    # the same thumbprint, another key: the signature does not verify
    stranger = trustme.CA(key_type=rsa).issue_cert("x.example", key_type=rsa).private_key_pem.bytes().decode()
    refused = app(stranger).acquire_token_for_client(["https://outlook.office365.com/.default"])
    assert refused["error"] == "invalid_client" and refused["error_codes"] == [700027]


def test_a_graph_token_has_the_wrong_audience_for_smtp_and_resources_do_not_mix(edge):
    graph = "https://graph.microsoft.com/Mail.Send"
    scopes = ["SMTP.Send", "offline_access", "openid", "profile", graph]
    overrides(edge, apps={DEVICE_APP: {"delegated_scopes": scopes}})
    host, port = edge.addresses["identity"]
    mixed = http(edge).post(f"https://{host}:{port}/contoso.com/oauth2/v2.0/devicecode", timeout=10, data={
        "client_id": DEVICE_APP, "scope": f"https://outlook.office.com/SMTP.Send {graph}"})
    assert mixed.status_code == 400 and mixed.json()["error_codes"] == [28000]
    app = device_app(edge)
    flow = app.initiate_device_flow(scopes=[graph])
    person_signs_in(edge, flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    assert result["scope"] == graph
    assert xoauth2(edge, SCANNER, result["access_token"]).startswith("535 5.7.3 Authentication unsuccessful")
