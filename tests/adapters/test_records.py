"""The records file as a tool reads it while the edge runs: every line JSON whatever the secrets
look like, and each event on disk within a second, before and without any stop."""

from __future__ import annotations

import base64
import json
import smtplib

import msgspec

from fakes.edge import Edge, EdgeThread
from fakes.exo.observed import Command, Disconnect, decode
from fakes.exo.secrets import SecretMask
from fakes.record import RecordLog


def test_a_secret_that_looks_like_a_number_or_a_key_masks_values_never_the_json(tmp_path):
    mask = SecretMask()
    mask.add("2026", "kind", "session")  # a password may be any text: a year, a word of the vocabulary
    log = RecordLog(tmp_path / "records.jsonl", clock=lambda: 1764420262.5, mask=mask.mask)
    session = log.open_session("submission", ("127.0.0.5", 40000), ("127.0.0.1", 587))
    session.add(Command(line="EHLO printer-2026", verb="EHLO"))
    log.close()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    events = [decode(line) for line in lines]  # every line parses, as the types
    assert [e.kind for e in events] == ["connect", "command"]
    assert events[0].t == 1764420262.5 and events[0].session == "s00001"
    assert isinstance(events[1], Command) and events[1].line == "EHLO printer-********"


def test_records_reach_the_file_while_the_edge_runs(tmp_path):
    """A lab tool tailing records.jsonl sees a session without waiting for 256 events or a stop:
    at the session's end, and what is still open within a second."""
    edge = Edge(state_dir=tmp_path)
    path = tmp_path / "records.jsonl"
    with EdgeThread(edge):
        host, port = edge.addresses["submission"]
        with smtplib.SMTP(host, port, local_hostname="device.lab") as client:
            client.ehlo()
            # still open: the events so far reach the file by the edge's flush, within a second
            assert edge.records.wait_for(lambda events: any(e.kind == "reply" for e in events), 5)
            assert edge.records.wait_written(timeout=10), "the open session's events were never written"
            assert "ehlo device.lab" in path.read_text().lower()
        # closed: its disconnect is flushed with it
        assert edge.records.wait_for(lambda events: any(e.kind == "disconnect" for e in events), 5)
        assert '"kind":"disconnect"' in path.read_text()



def test_the_records_window_is_bounded_in_octets_not_only_in_events(tmp_path):
    """A peer's 64 KiB lines fill the in-memory window with fewer events, never with more memory;
    every event is still in the file, and a window reaching past memory says so."""
    from fakes.record import WindowLost

    log = RecordLog(tmp_path / "records.jsonl", in_memory=10_000, in_memory_octets=1 << 20)
    session = log.open_session("submission", ("127.0.0.5", 40000), ("127.0.0.1", 587))
    mark = log.mark()
    for n in range(1000):  # 1000 lines of 4000 characters (a value is kept up to 4 KiB): 4 MB
        session.add(Command(line=f"NOOP {n:03d} " + "A " * 2000, verb="NOOP"))
    kept = log.events()
    assert sum(len(msgspec.json.encode(e)) for e in kept) <= 1 << 20 and 200 <= len(kept) < 300
    assert kept[-1].line.startswith("NOOP 999 ")
    try:
        log.window(mark)
    except WindowLost as lost:
        assert "octets" in str(lost)
    else:
        raise AssertionError("a window from before the newest megabyte was given as if whole")
    log.close()
    assert (tmp_path / "records.jsonl").read_text().count("\n") == 1001


def test_a_long_value_is_kept_as_its_start_and_never_as_half_a_secret(tmp_path):
    """The mask's work per event is bounded: a 64 KiB line is kept as its first 4 KiB, cut before
    the token it ends in, so a secret crossing the cut is not kept in part."""
    mask = SecretMask()
    mask.add("Scan-2026!")
    log = RecordLog(tmp_path / "records.jsonl", mask=mask.mask)
    session = log.open_session("submission", ("127.0.0.5", 40000), ("127.0.0.1", 587))
    padding = "NOOP " + "x " * 2046  # 4097 characters: the password's base64 crosses the cut
    secret = base64.b64encode(b"Scan-2026!").decode()
    session.add(Command(line=padding + secret + " " + "A" * 65_000, verb="NOOP"))
    log.close()
    (line,) = [json.loads(x)["line"] for x in (tmp_path / "records.jsonl").read_text().splitlines()[1:]]
    assert len(line) < 4200 and line.endswith("characters not kept)")
    assert secret[:4] not in line.rsplit("x", 1)[-1]  # no start of the secret before the note


def test_a_batch_reaches_memory_and_the_file_whole_and_in_order_and_an_empty_one_changes_nothing(tmp_path):
    """Events committed together are kept as one chunk: each its own line, in order, the one that
    holds a secret masked with the others untouched; a batch of none keeps nothing."""
    mask = SecretMask()
    mask.add("Scan-2026!")
    log = RecordLog(tmp_path / "records.jsonl", mask=mask.mask)
    log.extend([])
    assert log.events() == []
    batch = [Command(line="MAIL FROM:<a@contoso.com>", verb="MAIL", session="s1"),
             Command(line="NOOP Scan-2026!", verb="NOOP", session="s1"),
             Disconnect(session="s1")]
    log.extend(batch)
    kept = log.events()
    assert [type(e).__name__ for e in kept] == ["Command", "Command", "Disconnect"]
    assert kept[0].line == "MAIL FROM:<a@contoso.com>" and "Scan-2026!" not in kept[1].line
    lines = (tmp_path / "records.jsonl").read_text().splitlines()  # a session's end is flushed with it
    assert len(lines) == 3 and '"MAIL FROM:<a@contoso.com>"' in lines[0] and "Scan-2026!" not in lines[1]
    assert '"disconnect"' in lines[2]
    log.close()
