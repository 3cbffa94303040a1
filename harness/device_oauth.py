"""How a reference device gets and keeps its OAuth tokens from the lab's identity platform.

``DeviceOAuth`` is one device's token cache for one order, as a device's firmware keeps it: the
device code flow (RFC 8628) with the person at the device signing in on microsoft.com/link, the
refresh token used ahead of the access token's expiry and after a 535, a new sign-in when the
refresh token is refused; or, for an app, client credentials. Its faults are the ones devices
have in the field: never refreshing, retrying a refused refresh token in a loop, polling faster
than ``interval``. It speaks real HTTPS to the edge's identity address, naming the host it was
told (SNI and the certificate check), as a device whose DNS is the lab's would.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from fakes.exo.errors import ExoEdgeError
from fakes.exo.scopes import DEVICE_CODE_GRANT, DEVICE_SCOPE
from harness.senders import Order

OAUTH_SCOPE = DEVICE_SCOPE
# ahead: refreshes before expiry and keeps each new refresh token; never; loop: retries a refused one;
# stale: refreshes, but keeps presenting the first refresh token it was given
Refresh = Literal["ahead", "never", "loop", "stale"]


class SignInFailed(ExoEdgeError):
    """The device could not get a token; the text is what its screen would say."""


class _LabHttps(http.client.HTTPSConnection):
    def __init__(self, order: Order, name: str) -> None:
        super().__init__(name, timeout=min(10.0, order.timeout))
        self._address = order.identity.rsplit(":", 1)
        self._lab_context = ssl.create_default_context(cafile=order.cafile)

    def connect(self) -> None:
        raw = socket.create_connection((self._address[0], int(self._address[1])), self.timeout)
        self.sock = self._lab_context.wrap_socket(raw, server_hostname=self.host)


def post(order: Order, name: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A form POST over HTTPS to ``name`` at the lab's identity address: (status, JSON or the page)."""
    connection = _LabHttps(order, name)
    try:
        connection.request("POST", path, urllib.parse.urlencode(form),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, {"page": body.decode(errors="replace")}


@dataclass
class DeviceOAuth:
    order: Order
    scope: str = OAUTH_SCOPE
    refresh: Refresh = "ahead"
    poll_pace: float = 1.0  # of ``interval``: below 1 polls too fast
    app_only: bool = False
    poll_through_errors: bool = False  # keeps polling whatever the platform answers (a fault)
    ropc: bool = False  # signs in with the user's password at the token endpoint (a fault)
    authority: str | None = None  # the tenant segment it uses; None: the order's (the tenant's own)
    log: list[str] = field(default_factory=list)
    # set to stop the device: a wait between polls ends at once, and the sign-in with it
    stopped: threading.Event = field(default_factory=threading.Event)
    _access: str | None = None
    _expires: float = 0.0  # monotonic
    _lifetime: float = 0.0
    _refresh_token: str | None = None

    @property
    def _identity(self) -> str:
        return self.order.authority.split("://", 1)[1].split("/", 1)[0]

    @property
    def _token_path(self) -> str:
        return f"/{self._tenant}/oauth2/v2.0/token"

    @property
    def _tenant(self) -> str:
        return self.authority or self.order.authority.rstrip("/").rsplit("/", 1)[1]

    def access_token(self) -> str:
        """A token to present now: the one held while it has time left (a conformant device
        refreshes ahead: with less than half its lifetime or five minutes left)."""
        margin = min(300.0, self._lifetime / 2)
        if self._access and (self.refresh == "never" or time.monotonic() < self._expires - margin):
            return self._access
        if self.app_only:
            return self._client_credentials()
        if self._access and self._refresh_token:
            return self._refreshed()
        return self._sign_in()

    def refused(self) -> str | None:
        """The server refused the token presented (535): a new one to try, or None."""
        if self.refresh == "never":
            return None
        self._expires = 0.0
        return self.access_token()

    # -- grants ---------------------------------------------------------------------------------

    def _keep(self, answer: dict[str, Any]) -> str:
        self._access = str(answer["access_token"])
        self._lifetime = float(answer.get("expires_in", 3599))
        self._expires = time.monotonic() + self._lifetime
        if not (self.refresh == "stale" and self._refresh_token):
            self._refresh_token = answer.get("refresh_token", self._refresh_token)
        return self._access

    def _client_credentials(self) -> str:
        status, answer = post(self.order, self._identity, self._token_path, {
            "grant_type": "client_credentials", "client_id": self.order.client_id,
            "client_secret": self.order.client_secret or "", "scope": self.scope})
        if status != 200:
            raise SignInFailed(f"no app token: {answer.get('error_description', answer)}")
        return self._keep(answer)

    def _refreshed(self) -> str:
        tries = 10 if self.refresh == "loop" else 1
        for _ in range(tries):
            status, answer = post(self.order, self._identity, self._token_path, {
                "grant_type": "refresh_token", "client_id": self.order.client_id,
                "refresh_token": self._refresh_token or "", "scope": self.scope})
            if status == 200:
                self.log.append("refreshed the access token")
                return self._keep(answer)
        self.log.append(f"refresh refused ({answer.get('error')}): the device asks its user to sign in again")
        self._access = self._refresh_token = None
        return self._sign_in()

    def _sign_in(self) -> str:
        """The device code flow: ask for a code, show it to the person (who signs in on
        microsoft.com/link once the device has started polling), poll every ``interval``; or,
        for a device that does ROPC, its user's password at the token endpoint."""
        if self.ropc:
            status, answer = post(self.order, self._identity, self._token_path, {
                "grant_type": "password", "client_id": self.order.client_id, "username": self.order.user,
                "password": self.order.password or "", "scope": self.scope})
            if status != 200:
                raise SignInFailed(f"no token: {answer.get('error_description', answer)}")
            return self._keep(answer)
        status, code = post(self.order, self._identity, f"/{self._tenant}/oauth2/v2.0/devicecode",
                            {"client_id": self.order.client_id, "scope": self.scope})
        if status != 200:
            raise SignInFailed(f"device code refused: {code.get('error_description', code)}")
        self.log.append(f"screen: {code['message']}")
        deadline = time.monotonic() + min(float(code["expires_in"]), self.order.timeout)
        polls = 0
        while True:
            status, answer = post(self.order, self._identity, self._token_path, {
                "grant_type": DEVICE_CODE_GRANT, "client_id": self.order.client_id,
                "device_code": code["device_code"]})
            polls += 1
            if status == 200:
                return self._keep(answer)
            pause = float(code["interval"]) * self.poll_pace
            refused = answer.get("error") != "authorization_pending"
            if (refused and not (self.poll_through_errors and polls < 10)) or time.monotonic() + pause > deadline:
                raise SignInFailed(f"no token: {answer.get('error_description', answer)}")
            if polls == 1:  # the person reads the code off the screen and signs in
                self._person_signs_in(code["user_code"])
            # the device's own pace, which a check judges (RFC 8628: at least `interval` between
            # polls), or until the device is stopped
            if self.stopped.wait(pause):
                raise SignInFailed("stopped while it waited to poll again")

    def _person_signs_in(self, user_code: str) -> None:
        status, page = post(self.order, "www.microsoft.com", "/link", {
            "otc": user_code, "login": self.order.user, "password": self.order.password or "",
            "consent": "accept", "mfa": "approved"})
        if status != 200 or 'id="result"' not in page.get("page", ""):
            self.log.append("the person could not sign in on microsoft.com/link")
