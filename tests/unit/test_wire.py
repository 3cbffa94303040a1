"""Laws of the SMTP framer (no sockets): the same bytes give the same events wherever TCP splits them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes.exo.wire import (
    NEED_DATA,
    BodyData,
    ChunkEnd,
    ChunkStart,
    DataEnd,
    Framer,
    Line,
    LineTooLong,
)

LIMIT = 64  # a small command-line limit, so overlong lines are cheap to generate


def run(stream: bytes, cuts: list[int], *, data_after: set[int] | None = None, max_line: int = LIMIT) -> list:
    """Feed ``stream`` in the pieces that ``cuts`` make; say 354 after the lines whose index is in
    ``data_after`` (as the session would after DATA). Adjacent body pieces are merged."""
    framer = Framer(max_line=max_line)
    events: list = []
    lines_seen = 0
    edges = [0, *sorted(set(cuts)), len(stream)]
    for start, end in zip(edges, edges[1:], strict=False):
        framer.receive(stream[start:end])
        while (event := framer.next_event()) is not NEED_DATA:
            if isinstance(event, BodyData) and events and isinstance(events[-1], BodyData):
                events[-1] = BodyData(events[-1].data + event.data)
            else:
                events.append(event)
            if isinstance(event, Line):
                if data_after and lines_seen in data_after:
                    framer.start_data()
                lines_seen += 1
    return events


body_lines = st.lists(
    st.one_of(
        st.binary(max_size=40).filter(lambda b: b"\r\n" not in b),
        st.sampled_from([b".", b"..", b".x", b"\r", b"\n", b"\n.", b". ", b"\r.\n"]),
    ),
    max_size=12,
)


@st.composite
def sessions(draw):
    """A pipelined session: commands, a DATA message, BDAT chunks with arbitrary octets, overlong lines."""
    parts: list[bytes] = []
    expected: list = []
    data_after: set[int] = set()
    line_index = 0
    for kind in draw(st.lists(st.sampled_from(["command", "data", "bdat", "long"]), max_size=6)):
        if kind == "command":
            line = draw(st.sampled_from([b"EHLO printer", b"MAIL FROM:<a@b.example>", b"NOOP", b"RSET",
                                         b"BDAT x", b"bdat"]))
            parts.append(line + b"\r\n")
            expected.append(Line(line))
            line_index += 1
        elif kind == "data":
            lines = draw(body_lines)
            parts.append(b"DATA\r\n" + b"".join(
                (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n")
            expected.append(Line(b"DATA"))
            data_after.add(line_index)
            line_index += 1
            content = b"".join(line + b"\r\n" for line in lines)
            if content:
                expected.append(BodyData(content))
            expected.append(DataEnd())
        elif kind == "bdat":
            octets = draw(st.binary(max_size=60))  # may hold CRLF, commands, lone dots: never read as such
            last = draw(st.booleans())
            command = b"BDAT %d%s" % (len(octets), b" LAST" if last else b"")
            parts.append(command + b"\r\n" + octets)
            expected.append(ChunkStart(len(octets), last, command))
            if octets:
                expected.append(BodyData(octets))
            expected.append(ChunkEnd(len(octets), last))
        else:
            size = draw(st.integers(LIMIT + 1, LIMIT * 3))
            parts.append(b"A" * size + b"\r\n")
            expected.append(LineTooLong(size + 2))
    return b"".join(parts), expected, data_after


@given(sessions(), st.data())
def test_events_do_not_depend_on_where_the_stream_is_split(session, data):
    stream, expected, data_after = session
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert run(stream, cuts, data_after=data_after) == expected


@given(sessions())
def test_one_byte_at_a_time_gives_the_same_events(session):
    stream, expected, data_after = session
    assert run(stream, list(range(len(stream))), data_after=data_after) == expected


def test_a_long_line_ending_in_a_dot_does_not_end_data_when_its_crlf_comes_later():
    long_line = b"x" * 70_000 + b"."
    stream = b"DATA\r\n" + long_line + b"\r\n.inner\r\n" + b"tail\r\n.\r\nQUIT\r\n"
    cut = stream.index(b".\r\n.inner")  # the packet ends right after the line's own dot
    events = run(stream, [cut + 1], data_after={0}, max_line=64 * 1024)
    assert events == [Line(b"DATA"), BodyData(long_line + b"\r\ninner\r\ntail\r\n"), DataEnd(), Line(b"QUIT")]


def test_bdat_octets_that_look_like_commands_stay_message_octets():
    smuggled = b"RSET\r\nMAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<a@contoso.com>\r\nDATA\r\nhi\r\n.\r\n"
    stream = b"BDAT %d LAST\r\n" % len(smuggled) + smuggled + b"QUIT\r\n"
    assert run(stream, []) == [ChunkStart(len(smuggled), True, b"BDAT %d LAST" % len(smuggled)),
                               BodyData(smuggled), ChunkEnd(len(smuggled), True), Line(b"QUIT")]


def test_bdat_zero_last_and_case():
    assert run(b"bdat 0 last\r\n", []) == [ChunkStart(0, True, b"bdat 0 last"), ChunkEnd(0, True)]


def test_an_overlong_line_is_refused_whole_and_the_next_line_is_read():
    assert run(b"A" * 200 + b"\r\nNOOP\r\n", [70, 71, 150]) == [LineTooLong(202), Line(b"NOOP")]


def test_bytes_after_starttls_can_be_discarded():
    framer = Framer()
    framer.receive(b"STARTTLS\r\nMAIL FROM:<x@y.example>\r\n")
    assert framer.next_event() == Line(b"STARTTLS")
    assert framer.discard() == len(b"MAIL FROM:<x@y.example>\r\n")
    assert framer.next_event() is NEED_DATA


@given(st.lists(st.tuples(st.integers(0, 2500), st.sampled_from([b"\r\n", b"\n", b"\r", b""])), max_size=8))
def test_long_lines_and_bare_lf_are_found_as_a_line_by_line_reading_would(lines):
    from fakes.exo.message import has_bare_lf, longest_line_over

    content = b"".join(b"x" * n + end for n, end in lines)
    by_lines = max((len(line) for line in content.replace(b"\r", b"\n").split(b"\n")), default=0)
    assert longest_line_over(content) == (by_lines if by_lines > 998 else 0)
    assert has_bare_lf(content) == (b"\n" in content.replace(b"\r\n", b""))


def test_the_record_log_keeps_a_bounded_window_in_memory_and_every_event_on_disk(tmp_path):
    from fakes.exo.observed import Command, UnknownRecord, decode
    from fakes.record import RecordLog, WindowLost

    log = RecordLog(tmp_path / "records.jsonl", in_memory=100)
    session = log.open_session("mx", ("127.0.0.1", 1), ("127.0.0.1", 25))
    for i in range(1000):
        session.add(Command(line=f"NOOP {i}", verb="NOOP"))
    mark = log.mark()
    session.add(Command(line="QUIT", verb="QUIT"))
    assert mark == 1001 and [e.line for e in log.events(mark) if isinstance(e, Command)] == ["QUIT"]
    assert len(log.events(0)) == 100  # what is older has left memory, not the file
    with pytest.raises(WindowLost):  # a window that lost its start is never judged in part
        log.window(5)
    lines = (tmp_path / "records.jsonl").read_bytes().splitlines()
    assert len(lines) == 1002 and decode(lines[-1]) == log.events(mark)[0]  # the file reads back as the types
    with pytest.raises(UnknownRecord, match="colour"):  # one vocabulary: a field it does not know is refused
        decode(b'{"kind":"tls","session":"s1","t":1.0,"version":"TLSv1.3","colour":"blue"}')
    with pytest.raises(UnknownRecord, match="kind"):
        decode(b'{"kind":"weather","session":"s1","t":1.0}')
    log.close()


def test_a_word_that_is_no_command_gets_no_verb_in_the_record():
    """A client that lost track of its AUTH exchange may send its password as a line: the record's
    verb never holds a copy of it (upper-cased, it would slip past the mask)."""
    from fakes.exo.commands import command_fact, parse_command

    assert command_fact("Printer", parse_command(b"Printer")).verb == ""
    assert command_fact("vrfy alice", parse_command(b"vrfy alice")).verb == "VRFY"
    assert command_fact("MAIL FROM:<a@b.cd> SIZE=10", parse_command(b"MAIL FROM:<a@b.cd> SIZE=10")).params == ("SIZE",)
