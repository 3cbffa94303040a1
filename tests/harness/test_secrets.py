"""Secrets stay secret: what a sender prints (its password, its token, their base64 and AUTH
blobs) never reaches results.json, junit.xml, index.html or the records."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fakes.exo.secrets import MASK, SecretMask
from fakes.exo.tokens import xoauth2_payload
from harness.report import Run, write_reports
from harness.runner import Runner
from harness.scenario import load_catalog
from harness.senders import CommandSender

ROOT = Path(__file__).resolve().parents[2]
LEAKY = """
import base64, json, os, sys
user, password, token = os.environ["EXO_USER"], os.environ["EXO_PASS"], os.environ["EXO_TOKEN"]
json.dump([user, password, token], open(sys.argv[1], "w"))  # what the test checks for, kept apart
b64 = lambda s: base64.b64encode(s.encode()).decode()
print("password", password, "token", token)
print("~>", b64(password))                                   # swaks --auth LOGIN shows this
print("~> AUTH PLAIN", b64("\\0" + user + "\\0" + password))
print("~> AUTH XOAUTH2", b64("user=" + user + "\\x01auth=Bearer " + token + "\\x01\\x01"))
"""


def every_form(user: str, password: str, token: str) -> list[str]:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return [password, token, b64(password), b64(f"\0{user}\0{password}"), xoauth2_payload(user, token)]


def test_a_sender_that_prints_its_secrets_leaks_none_into_the_reports(edge, tmp_path):
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY)
    (case,) = [c for c in load_catalog(ROOT / "scenarios") if c.id == "submission/port-587-not-465"]
    handed = tmp_path / "handed.json"
    runner = Runner(edge, CommandSender(f"{sys.executable} {script} {handed}"))
    result = runner.run(case)
    user, password, token = json.loads(handed.read_text())
    assert password == "Scan-2026!" and token.count(".") == 2  # the sender really had them
    assert result.sender_result.stdout.count(MASK) >= 5
    run = Run(sender="leaky", tenant="contoso", edge=edge.describe(), results=[result], secrets=edge.secrets)
    written = {name: path.read_text() for name, path in write_reports(tmp_path / "report", run).items()}
    written["records"] = edge.records.path.read_text()
    for form in every_form(user, password, token):
        for name, text in written.items():
            assert form not in text, f"{form[:20]}… in {name}"


def test_the_mask_finds_a_secret_inside_any_base64():
    mask = SecretMask()
    mask.add("Kopierer#Etage3")
    for user in ("a@b.example", "mfp-3f@fabrikam.net", "xy@z.example"):
        for blob in (base64.b64encode(f"\0{user}\0Kopierer#Etage3".encode()).decode(),
                     xoauth2_payload(user, "Kopierer#Etage3")):
            masked = mask.mask(blob)
            assert MASK in masked
            assert "Kopierer#Etage3" not in base64.b64decode(masked.replace(MASK, "") + "==", validate=False
                                                              ).decode("latin-1")


APP = """
import base64, json, os, sys, urllib.parse
secret = os.environ["EXO_CLIENT_SECRET"]
json.dump(secret, open(sys.argv[1], "w"))
print("client_secret", secret, base64.b64encode(secret.encode()).decode())
print("form", "client_id=" + os.environ["EXO_CLIENT_ID"] + "&client_secret=" + secret)
print("urlencoded", urllib.parse.urlencode({"client_secret": secret}), secret.replace("~", "%7E"))
"""


def test_an_apps_client_secret_it_prints_leaks_into_no_report(edge, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    (case,) = [c for c in load_catalog(ROOT / "scenarios") if c.id == "oauth/app-only-send-as-app"]
    handed = tmp_path / "handed.json"
    result = Runner(edge, CommandSender(f"{sys.executable} {script} {handed}")).run(case)
    secret = json.loads(handed.read_text())
    assert secret == "App-Secret-2026~lab"  # the app was handed its secret
    run = Run(sender="app", tenant="contoso", edge=edge.describe(), results=[result], secrets=edge.secrets)
    written = {name: path.read_text() for name, path in write_reports(tmp_path / "report", run).items()}
    written["records"] = edge.records.path.read_text()
    for form in (secret, base64.b64encode(secret.encode()).decode(), secret.replace("~", "%7E")):
        for name, text in written.items():
            assert form not in text, f"{form[:6]}… in {name}"
    assert result.sender_result.stdout.count(MASK) >= 5


def test_a_form_body_and_a_refresh_token_are_masked_wherever_they_appear(edge):
    """What a sender prints of its sign-in (a form with its password, URL-encoded) and a refresh
    token sent anywhere (the lab's are shaped as Microsoft's, and masked by that shape)."""
    mask = edge.secrets
    form = "grant_type=password&username=scanner%40contoso.com&password=Scan-2026%21&scope=x"
    assert mask.mask(form) == f"grant_type=password&username=scanner%40contoso.com&password={MASK}&scope=x"
    grant = edge.on_loop(lambda: edge.identity.token({
        "grant_type": "password", "client_id": "00000000-0000-0000-0000-00000000d3c0",
        "username": "scanner@contoso.com", "password": "Scan-2026!",
        "scope": "https://outlook.office.com/SMTP.Send offline_access"}))
    refresh = grant.body["refresh_token"]
    assert mask.mask(f"NOOP {refresh}") == f"NOOP {MASK}"
    assert mask.mask(f"refresh_token={refresh}&x=1") == f"refresh_token={MASK}&x=1"


_TOKENISH = st.text(alphabet="eyJ0.AYXV0aD1CZWFydGg9QmVhcmVySmhiR2NpbkdjSjBlWEFpUowZXhBaGJHY2lPabcXYZ+/=_-. ",
                    max_size=120)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(_TOKENISH, st.sampled_from([
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eHh4eHh4eCJ9.c2lnbmF0dXJlc2lnbmF0dXJl", "0.A" + "Q" * 70,
    base64.b64encode(b"user=a@b\x01auth=Bearer eyJhbGciOi.x.y\x01\x01").decode(), "Scan-2026!",
    base64.b64encode(b"\0\0Scan-2026!").decode()])), max_size=6))
def test_the_masks_quick_look_never_lets_a_match_through(pieces):
    """Text is passed over unmasked only when it holds nothing any of the mask's shapes or
    learnt secrets could match: the answer is the full pattern's, always."""
    mask = SecretMask()
    mask.add("Scan-2026!")
    text = "".join(pieces)
    pattern, _ = mask._compiled
    assert mask.mask(text) == pattern.sub(MASK, text)


_LINES = st.lists(st.one_of(_TOKENISH, st.sampled_from([
    "Scan-2026!", 'say "Scan-2026!"\n', base64.b64encode(b"\0scanner\0Scan-2026!").decode(), "MAIL FROM:<a@b.c>",
    "x" * 5000, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eHh4eHh4eCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"])), max_size=4)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(_LINES, st.booleans()), min_size=1, max_size=5), max_size=6))
def test_a_batch_of_events_is_kept_as_each_would_be_alone(tmp_path_factory, batches):
    """A connection's events reach the records a reply batch at a time: a secret or an over-long
    value in one event changes how that event is kept, never how its neighbours are."""
    from fakes.exo.observed import Command, ReplySent
    from fakes.record import RecordLog

    mask = SecretMask()
    mask.add("Scan-2026!")
    where = tmp_path_factory.mktemp("records")
    alone, together = (RecordLog(where / name, mask=mask.mask) for name in ("alone.jsonl", "together.jsonl"))
    for n, batch in enumerate(batches):
        events = [Command(session=f"s{n}", t=float(i), line="".join(pieces), verb="NOOP") if command else
                  ReplySent(session=f"s{n}", t=float(i), line="250 " + "".join(pieces), code=250)
                  for i, (pieces, command) in enumerate(batch)]
        for event in events:
            alone.append(event)
        together.extend(events)
    kept = together.events()
    alone.close()
    together.close()
    assert (where / "together.jsonl").read_bytes() == (where / "alone.jsonl").read_bytes()
    assert kept == alone.events()
    written = (where / "together.jsonl").read_text()
    assert "Scan-2026!" not in written and base64.b64encode(b"\0scanner\0Scan-2026!").decode() not in written


_AWKWARD = 'Pa"ss\\wörd\x01!'  # a password with what JSON escapes, and more than ASCII
_JWT_LIKE = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eHh4eHh4eCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(st.text(max_size=6), _TOKENISH, st.sampled_from([
    _AWKWARD, json.dumps(_AWKWARD)[1:-1], json.dumps(_AWKWARD), base64.b64encode(b"\0u\0" + _AWKWARD.encode()).decode(),
    "Scan-2026!", "\n" + _JWT_LIKE, '"' + _JWT_LIKE + '"', "\\" + _JWT_LIKE, "0.A" + "Q" * 70, "\t0.A" + "Q" * 70])),
    max_size=6))
def test_a_record_the_quick_look_passes_is_one_the_mask_leaves_alone(pieces):
    """The records look once over a batch's values for anything the mask could replace and keep
    the events as encoded when there is nothing: what they keep is always what masking each value
    would have kept (passwords with quotes, backslashes and control characters, their JSON forms,
    tokens right after an escaped character)."""
    from fakes.exo.observed import Command, ReplySent
    from fakes.record import RecordLog, _kept_masked

    mask = SecretMask()
    mask.add("Scan-2026!", _AWKWARD)
    log = RecordLog(None, mask=mask.mask)
    text = "".join(pieces)
    events = [Command(session="s1", t=1.0, line=text, verb="NOOP"), ReplySent(session="s1", t=2.0, line=text, code=250)]
    log.extend(events)
    assert log.events() == [_kept_masked(event, mask.mask)[0] for event in events]
    assert _AWKWARD not in repr(log.events())
