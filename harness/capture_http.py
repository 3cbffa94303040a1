"""A device's sign-in to login.microsoftonline.com, read from a capture whose TLS was opened.

The HTTP/1.1 of the connection (h11 reads it: the device's requests with a server's parser, the
identity platform's answers with a client's, each kept in step with the other) becomes the
``identity`` events the lab's identity platform records: the endpoint, the grant and its client,
scope and tenant, and the answer (ok, or the error and its AADSTS code). Credentials never
become part of an event: a password is not read out of the form, device codes and refresh tokens
are named by fingerprint, as the lab names them.
"""

from __future__ import annotations

import collections
import json
import urllib.parse
from typing import Any

import h11

from fakes.exo.identity import flow_id
from fakes.exo.observed import IdentityRequest

BODY_KEPT = 64 << 10  # octets of a request or an answer read (a form, a JSON answer)


class SignIns:
    """One HTTPS connection to the identity platform, its requests and answers in order."""

    def __init__(self, session: str, peer: str) -> None:
        self.session, self.peer = session, peer
        self.requests = h11.Connection(h11.SERVER)  # reads what the device sent
        self.answers = h11.Connection(h11.CLIENT)  # reads what the platform answered
        self.asked: collections.deque[tuple[str, dict[str, str]]] = collections.deque()
        self.target = ""
        self.body = bytearray()
        self.status = 0
        self.answer = bytearray()
        self.broken = False  # not HTTP/1.1 as h11 reads it (HTTP/2, say): nothing more is read

    def device_sent(self, data: bytes, t: float) -> list[IdentityRequest]:
        if self.broken:
            return []
        try:
            self.requests.receive_data(data)
            while True:
                event = self.requests.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return []
                if isinstance(event, h11.Request):
                    self.target, self.body = event.target.decode("ascii", "replace"), bytearray()
                    self.answers.send(h11.Request(method=event.method, target=event.target, headers=event.headers))
                elif isinstance(event, h11.Data):
                    self.body += event.data[:BODY_KEPT - len(self.body)]
                    self.answers.send(h11.Data(data=event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self.answers.send(h11.EndOfMessage())
                    self.asked.append((self.target, _form(bytes(self.body))))
        except h11.ProtocolError:
            self.broken = True
        return []

    def platform_sent(self, data: bytes, t: float) -> list[IdentityRequest]:
        if self.broken:
            return []
        out: list[IdentityRequest] = []
        try:
            self.answers.receive_data(data)
            while True:
                event = self.answers.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return out
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    self.status, self.answer = event.status_code, bytearray()
                    self.requests.send(h11.Response(status_code=event.status_code, headers=event.headers,
                                                    reason=event.reason))
                elif isinstance(event, h11.Data):
                    self.answer += event.data[:BODY_KEPT - len(self.answer)]
                    self.requests.send(h11.Data(data=event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self.requests.send(h11.EndOfMessage())
                    if self.asked:
                        out.append(self._event(*self.asked.popleft(), t))
                    if self.requests.our_state is h11.DONE and self.requests.their_state is h11.DONE:
                        self.requests.start_next_cycle()
                        self.answers.start_next_cycle()
        except h11.ProtocolError:
            self.broken = True
        return out

    def _event(self, target: str, form: dict[str, str], t: float) -> IdentityRequest:
        path = urllib.parse.urlsplit(target).path
        parts = [p for p in path.split("/") if p]
        answer = _json(bytes(self.answer))
        ok = 200 <= self.status < 300
        codes = answer.get("error_codes") if isinstance(answer.get("error_codes"), list) else []
        device_code = form.get("device_code") or (answer.get("device_code") if ok else None)
        presented, issued = form.get("refresh_token"), answer.get("refresh_token") if ok else None
        interval = answer.get("interval") if ok else None
        return IdentityRequest(
            session=self.session, t=t, peer=self.peer, endpoint=parts[-1] if parts else "/",
            outcome="ok" if ok else str(answer.get("error") or f"HTTP {self.status}"),
            grant_type=form.get("grant_type"), client_id=form.get("client_id"), scope=form.get("scope"),
            aadsts=int(codes[0]) if codes and str(codes[0]).isdigit() else None, user=form.get("username"),
            flow=flow_id(str(device_code)) if device_code else None,
            interval=interval if isinstance(interval, int) else None,
            tenant=parts[0] if len(parts) > 1 and parts[1] == "oauth2" else None,
            presented=flow_id(presented) if presented else None, issued=flow_id(str(issued)) if issued else None)


def _form(body: bytes) -> dict[str, str]:
    """The fields of a form body; a password is never one of them."""
    fields = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    fields.pop("password", None)
    fields.pop("client_secret", None)
    fields.pop("client_assertion", None)
    return fields


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
