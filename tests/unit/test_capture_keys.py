"""A capture's TLS opened with its key log: a real STARTTLS dialogue (Python's TLS stack on both
ends, through memory, keys written as OpenSSL writes them), cut into segments anywhere Hypothesis
likes, some sent twice; with the keys the dialogue inside TLS comes out whole and in order, for
TLS 1.2 and 1.3; without them, or with another connection's, nothing inside is read and the
connection says it was hidden."""

from __future__ import annotations

import base64
import contextlib
import ssl
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes.exo.observed import AuthOutcome, Command, ReplySent, ServerCertificate, Tls
from harness.capture import events
from harness.decrypt import KeyLogError, read_keylog
from tests.unit.test_capture_reader import write

CLIENT, SERVER = ("10.0.0.5", 40001), ("10.0.0.1", 587)
PASSWORD = "Kx9-secret!"
CLEAR = [(False, b"220 smtp.example Microsoft ESMTP MAIL Service ready\r\n"), (True, b"EHLO printer.lab\r\n"),
         (False, b"250-smtp.example Hello\r\n250 STARTTLS\r\n"), (True, b"STARTTLS\r\n"),
         (False, b"220 2.0.0 SMTP server ready\r\n")]
INSIDE = [(True, b"EHLO printer.lab\r\n"), (False, b"250-smtp.example Hello\r\n250 AUTH LOGIN XOAUTH2\r\n"),
          (True, b"AUTH LOGIN\r\n"), (False, b"334 VXNlcm5hbWU6\r\n"),
          (True, base64.b64encode(b"scanner@contoso.com") + b"\r\n"), (False, b"334 UGFzc3dvcmQ6\r\n"),
          (True, base64.b64encode(PASSWORD.encode()) + b"\r\n"), (False, b"235 2.7.0 Authentication successful\r\n"),
          (True, b"MAIL FROM:<scanner@contoso.com>\r\n"), (False, b"250 2.1.0 Sender OK\r\n"),
          (True, b"QUIT\r\n"), (False, b"221 2.0.0 Service closing transmission channel\r\n")]
SEEN_INSIDE = ["EHLO printer.lab", "AUTH LOGIN", "MAIL FROM:<scanner@contoso.com>", "QUIT"]


def tls_dialogue(version: str, keylog: Path) -> list[tuple[bool, bytes]]:
    """What each side wrote, flight by flight: the dialogue in the clear, the handshake, then the
    dialogue inside TLS, the server's secrets written to ``keylog``."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("smtp.office365.com").configure_cert(server)
    server.keylog_filename = str(keylog)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    for context in (server, client):
        context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    bios = [ssl.MemoryBIO() for _ in range(4)]
    c = client.wrap_bio(bios[0], bios[1], server_hostname="smtp.office365.com")
    s = server.wrap_bio(bios[2], bios[3], server_side=True)
    flights = list(CLEAR)

    def carry() -> None:
        for from_client, out, into in ((True, bios[1], bios[2]), (False, bios[3], bios[0])):
            if data := out.read():
                flights.append((from_client, data))
                into.write(data)

    for _ in range(6):
        for end in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):  # the other side has not answered yet
                end.do_handshake()
        carry()
    for from_client, line in INSIDE:
        (c if from_client else s).write(line)
        carry()
        assert (s if from_client else c).read(len(line) + 1) == line
    return flights


def segments(flights: list[tuple[bool, bytes]], cuts: list[int], again: list[int]) -> list[tuple[float, bytes]]:
    """The flights as TCP frames, each cut where ``cuts`` say; the frames at ``again`` sent twice."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    seq = {True: 1000, False: 5000}
    frames: list[tuple[float, bytes]] = []

    def frame(from_client: bool, flags: str, payload: bytes = b"") -> None:
        (src, sport), (dst, dport) = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        packet = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq[from_client])
        frames.append((100 + len(frames) / 100, bytes(packet / payload if payload else packet)))
        seq[from_client] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    frame(True, "S")
    frame(False, "SA")
    for number, (from_client, data) in enumerate(flights):
        cut = cuts[number % len(cuts)] % len(data) if cuts else 0
        for piece in ([data[:cut], data[cut:]] if cut else [data]):
            frame(from_client, "PA", piece)
            if len(frames) in again:  # a retransmission, right after the original
                frames.append((frames[-1][0], frames[-1][1]))
    frame(True, "FA")
    return frames


@pytest.fixture(scope="module", params=["TLSv1_2", "TLSv1_3"])
def recorded(request, tmp_path_factory) -> tuple[str, list[tuple[bool, bytes]], Path]:
    keylog = tmp_path_factory.mktemp("keys") / f"{request.param}.log"
    return request.param, tls_dialogue(request.param, keylog), keylog


def _read(path: Path, keylog: Path | None) -> list:
    return list(events(path, {587: "submission"}, read_keylog(keylog) if keylog else None))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 600), max_size=8), again=st.lists(st.integers(0, 40), max_size=5))
def test_with_its_keys_the_dialogue_inside_tls_comes_out_whole(recorded, tmp_path, cuts, again):
    version, flights, keylog = recorded
    seen = _read(write(tmp_path / "k.pcap", segments(flights, cuts, again)), keylog)
    assert [e.line for e in seen if isinstance(e, Command)] == ["EHLO printer.lab", "STARTTLS", *SEEN_INSIDE]
    assert [e.outcome for e in seen if isinstance(e, AuthOutcome)] == ["success"]
    (tls,) = [e for e in seen if isinstance(e, Tls)]
    assert tls.version == version.replace("_", ".") and not tls.hidden
    assert [e.code for e in seen if isinstance(e, ReplySent)][-1] == 221
    (certificate,) = [e for e in seen if isinstance(e, ServerCertificate)]  # 1.3's too, decrypted
    assert certificate.names == ("smtp.office365.com",) and certificate.issuer and certificate.not_after
    assert PASSWORD not in repr(seen) and base64.b64encode(PASSWORD.encode()).decode() not in repr(seen)


def test_without_its_keys_nothing_inside_is_read(recorded, tmp_path):
    version, flights, _ = recorded
    other = tmp_path / "other.log"
    other.write_text(f"CLIENT_RANDOM {'ab' * 32} {'cd' * 48}\n")
    path = write(tmp_path / "k.pcap", segments(flights, [], []))
    for keylog in (None, other):
        seen = _read(path, keylog)
        assert [e.line for e in seen if isinstance(e, Command)] == ["EHLO printer.lab", "STARTTLS"]
        (tls,) = [e for e in seen if isinstance(e, Tls)]
        assert tls.hidden
        # the certificate travels in the clear up to TLS 1.2, encrypted in 1.3
        assert len([e for e in seen if isinstance(e, ServerCertificate)]) == (version == "TLSv1_2")


@pytest.mark.parametrize(("text", "said"), [
    ("", "no TLS secrets"),
    ("# only a comment\n", "no TLS secrets"),
    ("CLIENT_RANDOM zz 11\n", ":1: CLIENT_RANDOM: the client random and the secret must be hexadecimal"),
    (f"SOMETHING {'ab' * 32} 11\n", ":1: not a line of an NSS key log"),
    (f"\nCLIENT_RANDOM {'ab' * 16} 11\n", ":2: CLIENT_RANDOM: a client random is 32 octets, this one 16"),
])
def test_a_key_log_that_cannot_be_used_is_named_with_its_line(tmp_path, text, said):
    path = tmp_path / "keys.log"
    path.write_text(text)
    with pytest.raises(KeyLogError) as caught:
        read_keylog(path)
    assert str(caught.value).startswith(str(path)) and said in str(caught.value)
    assert "11" not in str(caught.value).replace(str(path), "")  # a secret is never quoted back
