"""Checks over what a sender asked login.microsoftonline.com (the ``identity`` records): the
device code flow, its polling pace, refreshing, signing in again after a refusal, app-only.

Each judges request times and answers the edge recorded, never what a sender says of itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fakes.exo.observed import IdentityRequest
from fakes.exo.scopes import APP_SCOPE, DEVICE_CODE_GRANT, SMTP_SCOPE, for_exchange
from harness.check_base import Outcome, _Check
from harness.observation import Observation


def _requests(obs: Observation, endpoint: str, grant: str | None = None) -> list[IdentityRequest]:
    return [e for e in obs.identity
            if e.endpoint == endpoint and (grant is None or e.grant_type == grant)]


class OAuthDeviceFlow(_Check):
    """The sender got its own token from the identity platform: a device code, signed in by a
    person, then redeemed at the token endpoint (the requests to login.microsoftonline.com)."""

    check: Literal["oauth_device_flow"] = "oauth_device_flow"

    def evaluate(self, obs: Observation) -> Outcome:
        asked = _requests(obs, "devicecode")
        if not asked:
            return self.outcome(False, "never asked login.microsoftonline.com for a device code: the device does "
                                       "not sign in with OAuth")
        if not any(e.outcome == "ok" for e in asked):
            refused = asked[0]
            return self.outcome(False, f"its device code request was refused: {refused.outcome} "
                                       f"(AADSTS{refused.aadsts}) for scope {refused.scope!r}")
        polls = _requests(obs, "token", DEVICE_CODE_GRANT)
        if not any(e.outcome == "ok" for e in polls):
            return self.outcome(False, f"got a device code but never redeemed it ({len(polls)} poll(s))")
        granted = [e for e in asked if e.outcome == "ok"]
        if not any(for_exchange(e.scope or "") for e in granted):
            return self.outcome(False, f"signed in with a device code, but for {granted[0].scope!r}: a token "
                                       "for Microsoft Graph, which smtp.office365.com refuses (535 5.7.3)")
        return self.outcome(True, f"signed in with a device code ({len(polls)} poll(s))")


class OAuthPollingPace(_Check):
    """Between two polls for the same device code at least ``interval`` seconds passed, as the
    device code answer asked (RFC 8628 3.5; Microsoft sends no ``slow_down``, so a fast poller is
    only seen in the request times). ``tolerance``: seconds of network jitter forgiven."""

    check: Literal["oauth_polling_pace"] = "oauth_polling_pace"
    tolerance: float = Field(0.05, ge=0, le=1)

    def evaluate(self, obs: Observation) -> Outcome:
        intervals = {e.flow: float(e.interval) for e in _requests(obs, "devicecode")
                     if e.flow and e.interval}
        times: dict[str, list[float]] = {}
        for poll in _requests(obs, "token", DEVICE_CODE_GRANT):
            if poll.flow in intervals:
                times.setdefault(poll.flow, []).append(float(poll.t))
        gaps = [(b - a, intervals[flow]) for flow, ts in times.items() for a, b in zip(ts, ts[1:], strict=False)]
        if not gaps:
            return self.outcome(None, "the device never polled twice for one code")
        fast = [(gap, interval) for gap, interval in gaps if gap + self.tolerance < interval]
        if fast:
            gap, interval = min(fast)
            return self.outcome(False, f"{len(fast)} of {len(gaps)} polls came too soon: {gap:.2f} s after the "
                                       f"one before, where the device code's interval is {interval:g} s")
        shortest = min(gap for gap, _ in gaps)
        return self.outcome(True, f"{len(gaps) + len(times)} polls, at least {shortest:.2f} s apart "
                                  f"(interval {max(i for _, i in gaps):g} s)")


class OAuthRefreshed(_Check):
    """Once its first access token was due, the sender got a new one with its refresh token,
    without asking its user to sign in again."""

    check: Literal["oauth_refreshed"] = "oauth_refreshed"

    def evaluate(self, obs: Observation) -> Outcome:
        refreshes = _requests(obs, "token", "refresh_token")
        sign_ins = [e for e in _requests(obs, "devicecode") if e.outcome == "ok"]
        if not any(e.outcome == "ok" for e in refreshes):
            if refreshes:
                first = refreshes[0]
                return self.outcome(False, f"its refresh was refused: {first.outcome} "
                                           f"(AADSTS{first.aadsts})")
            return self.outcome(False, "never used its refresh token: it kept presenting an access token past its "
                                       "expiry (535 5.7.3) or signed in anew")
        if len(sign_ins) > 1:
            return self.outcome(False, f"asked its user to sign in {len(sign_ins)} times where refreshing was "
                                       "enough")
        return self.outcome(True, f"refreshed its access token {sum(e.outcome == 'ok' for e in refreshes)} "
                                  "time(s) with its refresh token")


class OAuthSignInAgain(_Check):
    """After its refresh token was refused (revoked, or Conditional Access now asks for more) the
    sender asks its user to sign in again (a new device code), with at most ``max_retries``
    further tries of a refused refresh token: no storm of requests the service will refuse."""

    check: Literal["oauth_sign_in_again"] = "oauth_sign_in_again"
    max_retries: int = Field(1, ge=0)

    def evaluate(self, obs: Observation) -> Outcome:
        order = obs.identity
        first = next((i for i, e in enumerate(order) if e.endpoint == "token"
                      and e.grant_type == "refresh_token" and e.outcome == "invalid_grant"), None)
        if first is None:
            return self.outcome(None, "no refresh token of the sender was refused")
        refused = order[first]
        after = order[first + 1:]
        retries = [e for e in after if e.endpoint == "token" and e.grant_type == "refresh_token"
                   and e.outcome != "ok"]
        why = f"invalid_grant (AADSTS{refused.aadsts})"
        if len(retries) > self.max_retries:
            return self.outcome(False, f"tried the refused refresh token {len(retries)} more time(s) after {why}: "
                                       "a loop the service throttles; ask the user to sign in again")
        if not any(e.endpoint == "devicecode" for e in after):
            return self.outcome(False, f"after {why} it never asked its user to sign in again")
        return self.outcome(True, f"after {why} it asked its user to sign in again")


class OAuthAppOnly(_Check):
    """The app got its token with client credentials and the scope
    ``https://outlook.office365.com/.default`` (SMTP.SendAsApp), never with a person's sign-in."""

    check: Literal["oauth_app_only"] = "oauth_app_only"

    def evaluate(self, obs: Observation) -> Outcome:
        grants = _requests(obs, "token", "client_credentials")
        if not grants:
            return self.outcome(False, "never asked for an app token (client credentials)")
        ok = [e for e in grants if e.outcome == "ok"]
        if not ok:
            return self.outcome(False, f"its client credentials were refused: {grants[0].outcome} "
                                       f"(AADSTS{grants[0].aadsts}) for scope {grants[0].scope!r}")
        if _requests(obs, "devicecode"):
            return self.outcome(False, "an app-only sender asked for a person's sign-in (device code)")
        return self.outcome(True, f"app token by client credentials for {APP_SCOPE}")


class OAuthScope(_Check):
    """Every token the sender asked for was one Exchange Online's SMTP accepts: delegated
    SMTP.Send (``https://outlook.office.com/SMTP.Send`` or ``https://outlook.office365.com/...``,
    or Exchange's ``.default``; OpenID scopes, offline_access and other Exchange permissions beside),
    or app-only Exchange's ``.default``; never a Microsoft Graph scope, nor a bare name (Graph's)."""

    check: Literal["oauth_scope"] = "oauth_scope"

    def evaluate(self, obs: Observation) -> Outcome:
        asked = [e for e in obs.identity if e.scope]
        if not asked:
            return self.outcome(None, "the sender asked the identity platform for no scope")
        for request in asked:
            if not for_exchange(str(request.scope), app_only=request.grant_type == "client_credentials"):
                return self.outcome(False, f"asked for {request.scope!r}: smtp.office365.com accepts only tokens "
                                           f"for {SMTP_SCOPE} (or {APP_SCOPE} app-only); a Microsoft Graph token "
                                           "(a bare SMTP.Send is Graph's) is refused with 535 5.7.3")
        return self.outcome(True, f"asked for {asked[0].scope!r}")


class OAuthRefreshTokenKept(_Check):
    """Each refresh presents the newest refresh token the platform returned: a device stores the
    rotated one. (Microsoft leaves the old ones valid until they expire, so this is judged from
    which token was presented, never from a refusal.)"""

    check: Literal["oauth_refresh_token_kept"] = "oauth_refresh_token_kept"

    def evaluate(self, obs: Observation) -> Outcome:
        newest: dict[str, str] = {}  # by client: the refresh token it was given last
        judged, stale = 0, 0
        for event in obs.identity:
            client = str(event.client_id)
            if event.grant_type == "refresh_token" and event.presented and client in newest:
                judged += 1
                stale += event.presented != newest[client]
            if event.issued:
                newest[client] = str(event.issued)
        if judged < 2:
            return self.outcome(None, f"{judged} refresh(es): the rotation is judged from the second refresh on")
        if stale:
            return self.outcome(False, f"{stale} of {judged} refreshes presented a refresh token the platform had "
                                       "already replaced: store the new refresh_token of every answer (the old one "
                                       "works only until its own lifetime ends, and the user is signed out then)")
        return self.outcome(True, f"every one of {judged} refreshes presented the newest refresh token")


class OAuthStopsWhenRefused(_Check):
    """Once the identity platform refuses the app itself (disabled, unknown, wrong secret:
    ``unauthorized_client`` or ``invalid_client``), the sender makes at most ``max_requests``
    more requests there: retrying cannot help until an administrator acts."""

    check: Literal["oauth_stops_when_refused"] = "oauth_stops_when_refused"
    max_requests: int = Field(2, ge=0)

    def evaluate(self, obs: Observation) -> Outcome:
        order = obs.identity
        first = next((i for i, e in enumerate(order)
                      if e.outcome in ("unauthorized_client", "invalid_client")), None)
        if first is None:
            return self.outcome(None, "the identity platform never refused the sender's app")
        refused, after = order[first], len(order) - first - 1
        why = f"{refused.outcome} (AADSTS{refused.aadsts})"
        if after > self.max_requests:
            return self.outcome(False, f"{after} more requests to login.microsoftonline.com after {why}: the app "
                                       "itself is refused, and retrying only gets the device throttled")
        return self.outcome(True, f"stopped after {why} ({after} more request(s))")


class OAuthNoPasswordGrant(_Check):
    """The sender never hands its user's password to the token endpoint (ROPC, ``grant_type=
    password``): Microsoft serves it for work accounts without MFA, so it works until Conditional
    Access asks for a second factor, and then fails as basic authentication does."""

    check: Literal["oauth_no_password_grant"] = "oauth_no_password_grant"

    def evaluate(self, obs: Observation) -> Outcome:
        asked = _requests(obs, "token")
        if not asked:
            return self.outcome(None, "the sender asked the token endpoint for nothing")
        password = [e for e in asked if e.grant_type == "password"]
        if password:
            return self.outcome(False, f"signed in {len(password)} time(s) with its user's password at the token "
                                       "endpoint (ROPC): basic authentication by another name, refused once "
                                       "Conditional Access requires MFA (AADSTS50076)")
        grants = sorted({str(e.grant_type) for e in asked})
        return self.outcome(True, f"never sent a password to the token endpoint ({', '.join(grants)})")


class OAuthTenantAuthority(_Check):
    """The sender asks the identity platform under its tenant (its id or a domain), not under
    /common or /organizations: apps are registered single-tenant by default, and those are refused
    there (AADSTS50194)."""

    check: Literal["oauth_tenant_authority"] = "oauth_tenant_authority"

    def evaluate(self, obs: Observation) -> Outcome:
        asked = [e for e in obs.identity if e.endpoint in ("devicecode", "token") and e.tenant]
        if not asked:
            return self.outcome(None, "the sender asked the identity platform for nothing")
        shared = [e for e in asked if str(e.tenant).lower() in ("common", "organizations", "consumers")]
        if shared:
            return self.outcome(False, f"asked under /{shared[0].tenant}: a single-tenant app (Microsoft's default) "
                                       "is refused there with AADSTS50194; use the tenant's id or domain")
        return self.outcome(True, f"asked under its tenant (/{asked[0].tenant})")
