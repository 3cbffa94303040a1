"""The capture reader over captures Hypothesis mutates (no sockets): segments out of order and
retransmitted, packets cut short, VLAN tags, IPv6. Whatever it is given, it reads without a
traceback; what TCP delivers whole, it reassembles into the dialogue that was sent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import PcapWriter

from fakes.exo.observed import Command, Connect, ReplySent
from harness.capture import events
from harness.fleet import JudgeError, group, judge, read
from harness.packets import PCAP_ORDER, pcap_records
from harness.packets import packets as harness_packets

CLIENT, SERVER = ("10.0.0.5", 40000), ("10.0.0.1", 25)
DIALOGUE = [  # (from the client, what it sent), as a device doing direct send in the clear would
    (False, b"220 mx.example Microsoft ESMTP MAIL Service ready\r\n"),
    (True, b"EHLO printer.lab\r\n"), (False, b"250-mx.example Hello\r\n250 SMTPUTF8\r\n"),
    (True, b"MAIL FROM:<scanner@contoso.com>\r\n"), (False, b"250 2.1.0 Sender OK\r\n"),
    (True, b"RCPT TO:<partner@example.org>\r\n"),
    (False, b"550 5.7.64 TenantAttribution; Relay Access Denied\r\n"),
    (True, b"QUIT\r\n"), (False, b"221 2.0.0 Service closing transmission channel\r\n"),
]
COMMANDS = ["EHLO printer.lab", "MAIL FROM:<scanner@contoso.com>", "RCPT TO:<partner@example.org>", "QUIT"]


def packets(*, v6: bool = False, vlan: bool = False, split: int = 0,
            dialogue: list[tuple[bool, bytes]] = DIALOGUE) -> list[tuple[float, bytes]]:
    """The dialogue as (time, frame): handshake, each payload (cut in two at ``split`` when it can
    be), FIN."""
    seq = {True: 1000, False: 5000}
    layer = (lambda s, d: IPv6(src=f"fd00::{s[-1]}", dst=f"fd00::{d[-1]}")) if v6 else (lambda s, d: IP(src=s, dst=d))
    frames, t = [], 100.0

    def frame(from_client: bool, flags: str, payload: bytes = b"") -> None:
        nonlocal t
        (src, sport), (dst, dport) = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        ether = ether / Dot1Q(vlan=7) if vlan else ether
        packet = ether / layer(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq[from_client])
        frames.append((t, bytes(packet / payload if payload else packet)))
        seq[from_client] += len(payload) + (1 if "S" in flags or "F" in flags else 0)
        t += 0.01

    frame(True, "S")
    frame(False, "SA")
    for from_client, data in dialogue:
        pieces = [data[:split], data[split:]] if 0 < split < len(data) else [data]
        for piece in pieces:
            frame(from_client, "PA", piece)
    frame(True, "FA")
    return frames


def write(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    with PcapWriter(str(path), linktype=1, sync=True) as writer:
        writer.write_header(None)
        for t, data in frames:
            writer.write_packet(data, sec=int(t), usec=int((t % 1) * 1_000_000))
    return path


def dialogue(path: Path) -> tuple[list[str], list[str]]:
    seen = list(events(path, {25: "mx"}))
    return [e.line for e in seen if isinstance(e, Command)], [e.line for e in seen if isinstance(e, ReplySent)]


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("vlan", [False, True])
def test_a_dialogue_in_the_clear_is_read_whole(tmp_path, v6, vlan):
    commands, replies = dialogue(write(tmp_path / "c.pcap", packets(v6=v6, vlan=vlan, split=7)))
    assert commands == COMMANDS
    assert replies[-2].startswith("550 5.7.64") and len(replies) == 6
    devices = group(read(tmp_path / "c.pcap", {25: "mx"})[0])
    (device,) = devices.values()
    judged = judge(device)
    assert judged.option == "direct-send" and judged.verdict == "would fail" and "550 5.7.64" in judged.cause


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), split=st.integers(0, 12), v6=st.booleans(), vlan=st.booleans())
def test_reordered_and_retransmitted_segments_are_reassembled(tmp_path, data, split, v6, vlan):
    frames = packets(v6=v6, vlan=vlan, split=split)
    head, body = frames[:2], frames[2:]
    order = data.draw(st.permutations(range(len(body))))
    again = data.draw(st.lists(st.integers(0, len(body) - 1), max_size=4))  # retransmissions
    mutated = head + [body[i] for i in order] + [body[i] for i in again]
    commands, _ = dialogue(write(tmp_path / "m.pcap", mutated))
    # the client's stream is whole whatever the order: every command, once, in the order sent
    assert commands == COMMANDS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 120)), max_size=6),
       junk=st.lists(st.binary(max_size=80), max_size=3), v6=st.booleans(), vlan=st.booleans())
def test_cut_and_foreign_packets_never_stop_the_reader(tmp_path, cuts, junk, v6, vlan):
    frames = packets(v6=v6, vlan=vlan, split=5)
    for index, keep in cuts:  # packets cut short, as a small snap length or a damaged file leaves them
        if index < len(frames):
            frames[index] = (frames[index][0], frames[index][1][:keep])
    frames += [(200.0, blob) for blob in junk]
    seen = list(events(write(tmp_path / "x.pcap", frames), {25: "mx"}))
    assert all(e.t >= 0 for e in seen)
    for device in group(seen).values():
        judge(device)  # judged, whatever is left of it


def test_a_file_cut_inside_a_record_is_read_up_to_the_cut(tmp_path):
    whole = write(tmp_path / "w.pcap", packets()).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-30])
    commands, _ = dialogue(cut)
    assert commands[:3] == COMMANDS[:3]


def test_what_is_not_a_capture_is_named_with_its_file(tmp_path):
    notes = tmp_path / "printer.log"
    notes.write_bytes(b"\x00\x01 not a capture")
    with pytest.raises(JudgeError, match="printer.log: not a capture"):
        read(notes)
    broken = tmp_path / "records.jsonl"
    broken.write_text('{"kind":"connect","session":"s1","t":1.0,"endpoint":"mx","peer":["10.0.0.5",1]}\n{"kind":"x"}\n')
    with pytest.raises(JudgeError, match=r"records.jsonl:2: not a record"):
        list(read(broken)[0])
    assert isinstance(next(read(broken)[0]), Connect)
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(JudgeError, match="without records.jsonl"):
        read(state)
    (state / "records.jsonl").write_bytes(broken.read_bytes().splitlines(keepends=True)[0])
    events_, capture = read(state)
    assert capture is False and [e.kind for e in events_] == ["connect"]


def test_credentials_in_the_clear_never_reach_the_fleet_report(tmp_path):
    """A client that lost track of its AUTH exchange sends its password as a "command", and Exchange
    echoes it in the 500; a token in the clear is masked by its shape."""
    import base64
    import json

    from harness.report.fleet import write_html, write_json

    password = base64.b64encode(b"Scan-2026!").decode()
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzY2FubmVyQGNvbnRvc28uY29tIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    dialogue = [DIALOGUE[0], (True, b"EHLO printer.lab\r\n"), DIALOGUE[2],
                (True, b"AUTH PLAIN\r\n"), (False, b"504 5.7.4 Unrecognized authentication type\r\n"),
                (True, password.encode() + b"\r\n"),
                (False, f"500 5.3.3 Unrecognized command '{password}'\r\n".encode()),
                (True, f"XTOKEN {jwt}\r\n".encode()), (False, b"500 5.3.3 Unrecognized command\r\n"),
                *DIALOGUE[-2:]]
    capture = write(tmp_path / "leak.pcap", packets(dialogue=dialogue))
    judged = [judge(device) for device in group(read(capture, {25: "mx"})[0]).values()]
    page = write_html(tmp_path / "index.html", judged, "leak.pcap", capture=True).read_text()
    data = write_json(tmp_path / "fleet.json", judged, "leak.pcap").read_text()
    for text in (page, data, json.dumps([j.transcript for j in judged])):
        assert password not in text and jwt not in text and "Scan-2026!" not in text
    assert "&lt;redacted&gt;" in page


def test_port_25_of_smtp_office365_com_is_submission_where_the_capture_shows_its_answer(tmp_path):
    """A device set to smtp.office365.com:25 (allowed for SMTP AUTH) is not judged as direct
    send when the capture holds the DNS answer that named the address it connected to."""
    from dnslib import RR, A, DNSRecord
    from scapy.layers.inet import UDP

    answer = DNSRecord.question("smtp.office365.com").reply()
    answer.add_answer(RR("smtp.office365.com", rdata=A(SERVER[0]), ttl=60))
    dns = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.53", dst=CLIENT[0]) / UDP(
        sport=53, dport=5353) / answer.pack()
    frames = [(99.0, bytes(dns)), *packets()]
    seen = list(events(write(tmp_path / "s25.pcap", frames), {25: "mx"}))
    assert [e.endpoint for e in seen if isinstance(e, Connect)] == ["submission-25"]
    (device,) = group(seen).values()
    assert judge(device).option == "submission"
    without = [e.endpoint for e in events(write(tmp_path / "mx.pcap", packets()), {25: "mx"}) if isinstance(e, Connect)]
    assert without == ["mx"]
    told = events(tmp_path / "mx.pcap", {25: "mx"}, submission_addresses=[SERVER[0]])  # judge --address submission=
    assert [e.endpoint for e in told if isinstance(e, Connect)] == ["submission-25"]


def test_judge_takes_only_the_address_of_smtp_office365_com(tmp_path, capsys):
    from harness.cli import main

    write(tmp_path / "mx.pcap", packets())
    with pytest.raises(SystemExit) as stopped:
        main(["judge", str(tmp_path / "mx.pcap"), "--address", "mx=10.0.0.1", "--report", str(tmp_path)])
    assert "judge takes the address of smtp.office365.com" in str(stopped.value)
    assert main(["judge", str(tmp_path / "mx.pcap"), "--address", f"submission={SERVER[0]}", "--port", "mx=25",
                 "--json", str(tmp_path / "f.json"), "--report", str(tmp_path)]) in (0, 1)
    assert '"option": "submission"' in (tmp_path / "f.json").read_text()


def test_a_dhcp_host_name_names_the_device_before_its_ehlo(tmp_path):
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import UDP

    request = (Ether(src="02:00:00:00:00:05", dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
               / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex("020000000005"))
               / DHCP(options=[("message-type", "request"), ("requested_addr", CLIENT[0]),
                               ("hostname", b"MFP-4020"), "end"]))
    seen = list(events(write(tmp_path / "dhcp.pcap", [(99.0, bytes(request)), *packets()]), {25: "mx"}))
    (device,) = group(seen).values()
    assert device.address == CLIENT[0] and device.names == ["MFP-4020", "printer.lab"]
    assert any(line.endswith("DHCP: MFP-4020 asks for 10.0.0.5") for line in judge(device).transcript)


def test_past_the_most_devices_followed_the_rest_are_counted_and_the_page_says_so(tmp_path, monkeypatch):
    from fakes.exo.observed import Disconnect
    from harness import fleet
    from harness.report.fleet import write_html

    monkeypatch.setattr(fleet, "MAX_DEVICES", 3)
    seen: list = []
    for n in range(1, 6):
        seen += [Connect(session=f"c{n}", t=n, endpoint="mx", peer=(f"10.0.0.{n}", 40000), local=SERVER),
                 Command(session=f"c{n}", t=n, line=f"EHLO device-{n}", verb="EHLO"),
                 Disconnect(session=f"c{n}", t=n)]
    devices = group(seen)
    assert sorted(devices) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert sorted(devices.unfollowed) == ["10.0.0.4", "10.0.0.5"]
    page = write_html(tmp_path / "index.html", [judge(d) for d in devices.values()], "big.pcap", capture=True,
                      unfollowed=len(devices.unfollowed)).read_text()
    assert "2 more device address(es) appeared after the first" in page


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=60), options=st.integers(0, 10), flags=st.integers(0, 0x1FF),
       cut=st.integers(0, 140), flips=st.lists(st.tuples(st.integers(12, 60), st.integers(0, 255)), max_size=3),
       fragment=st.sampled_from([0, 0x2000, 0x0001, 0x4000]), length=st.sampled_from([None, 0, 30, 500]))
def test_the_fast_path_reads_every_frame_as_dpkt_does(payload, options, flags, cut, flips, fragment, length):
    """Ethernet/IPv4/TCP read from fixed offsets gives dpkt's segment, or leaves the frame to it."""
    import dpkt

    from harness.packets import segment_of, tcp_over_ipv4

    tcp = TCP(sport=40000, dport=25, seq=7, flags=flags, options=[("NOP", None)] * options)
    ip = IP(src="10.0.0.5", dst="10.0.0.1", flags=fragment >> 13, frag=fragment & 0x1FFF)
    if length is not None:
        ip.len = length
    frame = bytearray(bytes(Ether() / ip / tcp / payload))
    for at, value in flips:
        if at < len(frame):
            frame[at] = value
    whole = cut >= len(frame) and not flips and fragment in (0, 0x4000) and length is None
    frame = bytes(frame[:cut] if cut < len(frame) else frame)
    fast = tcp_over_ipv4(frame)
    if whole:  # a whole frame of the common kind takes the fast path
        assert fast is not None and fast.payload == payload and fast.flags == flags
    if fast is not None:
        assert fast == segment_of(frame, dpkt.ethernet.Ethernet)


def test_a_devices_retries_show_when_they_came_and_after_what(tmp_path):
    """The retry timing: each connection, when it came, how long after the last one ended, and
    the reply it ended with (a 451, then a retry 30 s later that was taken)."""
    from fakes.exo.observed import Disconnect
    from harness.report.fleet import write_html

    seen: list = []
    for n, (t, code, text) in enumerate([(100.0, 451, "451 4.7.500 Server busy. Please try again later."),
                                         (130.5, 250, "250 2.6.0 Queued mail for delivery")], 1):
        session = f"c{n}"
        seen += [Connect(session=session, t=t, endpoint="mx", peer=("10.0.0.7", 40000 + n), local=SERVER),
                 ReplySent(session=session, t=t, line="220 mx.example ready", code=220, stage="banner"),
                 Command(session=session, t=t + 0.1, line="MAIL FROM:<app@contoso.com>", verb="MAIL"),
                 ReplySent(session=session, t=t + 0.2, line=text, code=code, stage="mail"),
                 Disconnect(session=session, t=t + 0.5)]
    (device,) = group(seen).values()
    judged = judge(device)
    assert [(c.at, c.gap, c.ended) for c in judged.timing] == [
        (0.0, None, "451 4.7.500 Server busy. Please try again later."),
        (30.5, 30.0, "250 2.6.0 Queued mail for delivery")]
    page = write_html(tmp_path / "index.html", [judged], "retry.pcap", capture=True).read_text()
    assert "After the last ended (s)" in page and "30.000" in page


def test_a_message_in_bdat_chunks_is_read_and_its_replies_answer_the_right_stage(tmp_path):
    """Two chunks, then an empty LAST: each chunk's 250 answers "data", the LAST's the message,
    and the commands after it are commands again (not message octets)."""
    from fakes.exo.observed import MessageSeen

    body = b"From: scanner@contoso.com\r\nSubject: chunked\r\n\r\npage 1\r\n"
    first, second = body[:20], body[20:]
    chunked = [
        (False, b"220 mx.example Microsoft ESMTP MAIL Service ready\r\n"), (True, b"EHLO printer.lab\r\n"),
        (False, b"250-mx.example Hello\r\n250 CHUNKING\r\n"), (True, b"MAIL FROM:<scanner@contoso.com>\r\n"),
        (False, b"250 2.1.0 Sender OK\r\n"), (True, b"RCPT TO:<alice@contoso.com>\r\n"),
        (False, b"250 2.1.5 Recipient OK\r\n"),
        (True, b"BDAT %d\r\n" % len(first) + first), (False, b"250 2.0.0 %d octets received\r\n" % len(first)),
        (True, b"BDAT %d\r\n" % len(second) + second), (False, b"250 2.0.0 %d octets received\r\n" % len(second)),
        (True, b"BDAT 0 LAST\r\n"), (False, b"250 2.6.0 Queued mail for delivery\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 2.0.0 Service closing transmission channel\r\n"),
    ]
    seen = list(events(write(tmp_path / "bdat.pcap", packets(dialogue=chunked, split=9)), {25: "mx"}))
    assert [e.line for e in seen if isinstance(e, Command)][-4:] == [
        f"BDAT {len(first)}", f"BDAT {len(second)}", "BDAT 0 LAST", "QUIT"]
    (message,) = [e for e in seen if isinstance(e, MessageSeen)]
    assert message.size == len(body) and message.has_from and message.via == "BDAT"
    stages = [(e.code, e.stage) for e in seen if isinstance(e, ReplySent)][-4:]
    assert stages == [(250, "data"), (250, "data"), (250, "message"), (221, "quit")]


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999_999), st.binary(max_size=300)),
                        max_size=12),
       magic=st.sampled_from(sorted(PCAP_ORDER)), cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_a_classic_pcap_files_records_are_read_as_dpkt_reads_them(records, magic, cut):
    """Both byte orders, micro- and nanosecond files, and a file cut anywhere: the same frames at
    the same times, and a cut-off record header is an error to both."""
    import struct

    import dpkt

    order = PCAP_ORDER[magic]
    data = magic + struct.pack(order + "HHiIII", 2, 4, 0, 0, 65535, 1) + b"".join(
        struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame for sec, frac, frame in records)
    data = data if cut is None else data[:24 + cut]

    def read(records_of):
        out = []
        try:
            for t, frame in records_of:
                out.append((round(float(t), 6), bytes(frame)))
        except (ValueError, dpkt.dpkt.Error):
            out.append("damaged")
        return out

    ours = read(pcap_records(io.BytesIO(data[24:]), magic))
    theirs = read(dpkt.pcap.Reader(io.BytesIO(data)))
    assert ours == theirs


def test_a_record_longer_than_any_frame_ends_the_reading_with_a_warning(tmp_path, caplog):
    import struct

    frames = packets()
    damaged = bytearray(write(tmp_path / "w.pcap", frames).read_bytes())
    second = 24 + 16 + len(frames[0][1])  # where the second record's header starts
    damaged[second + 8:second + 12] = struct.pack(PCAP_ORDER[bytes(damaged[:4])] + "I", 0x7FFFFFFF)
    path = tmp_path / "damaged.pcap"
    path.write_bytes(damaged)
    assert len(list(harness_packets(path))) == 1
    assert "stopped reading at a damaged record (a record claims 2147483647 octets)" in caplog.text
