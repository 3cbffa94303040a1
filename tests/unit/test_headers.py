"""The edge's quick reading of a header block gives what the email package's parser gives, for
any block: the fields it reads, folded or not, repeated or missing, and every block the quick
reading passes to the parser (bare CR or LF, lines that are no field, a Unix "From " line,
separators str.splitlines would cut at, non-ASCII)."""

from __future__ import annotations

from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses

from hypothesis import given, settings
from hypothesis import strategies as st

from fakes.exo.message import _PLAIN_BLOCK, _unfold, read_headers

NAMES = st.sampled_from(["From", "from", "FROM", "Message-ID", "Date", "Subject", "X-Mailer", "To", "Sender",
                         "Subject ", "Fr\u00f6m", ""])
VALUE = st.text(alphabet=st.sampled_from(list("ab <>@.,\"():;\t ") + ["\u00e9", "\x0b", "\u2028", "\r", "\n"]),
                max_size=30)
FOLD = st.builds(lambda ws, value: ws + value, st.sampled_from([" ", "\t", "  "]), VALUE)
FIELD = st.builds(lambda name, value, folds: f"{name}:{value}\r\n" + "".join(f + "\r\n" for f in folds),
                  NAMES, VALUE, st.lists(FOLD, max_size=2))
ODD = st.sampled_from(["From scanner@contoso.com Mon Nov 30\r\n", " leading fold\r\n", "no colon here\r\n",
                       "Date: bare lf\n", "Subject: bare cr\rx\r\n", ": empty name\r\n"])


def reference(content: bytes) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
    """What the edge read before: the email package's parser on the whole block."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[:end + 2]
    parsed = HeaderParser(policy=policy.compat32).parsestr(head.decode("utf-8", "replace"))

    def one(name: str) -> str | None:
        value = parsed.get(name)
        return None if value is None else _unfold(str(value))

    froms = tuple(a.lower() for _, a in getaddresses(parsed.get_all("From", [])) if a)
    return froms, one("Message-ID") or None, one("Date"), one("Subject")


@settings(max_examples=600, deadline=None)
@given(lines=st.lists(st.one_of(FIELD, FIELD, FIELD, ODD), max_size=8), body=st.sampled_from(["", "\r\nbody\r\n"]))
def test_the_quick_reading_and_the_parser_agree(lines, body):
    content = ("".join(lines) + body).encode("utf-8")
    headers = read_headers(content)
    froms, message_id, date, subject = reference(content)
    assert headers.from_addresses == froms
    assert (headers.message_id, headers.date, headers.subject) == (message_id, date, subject)


def test_a_plain_block_is_read_quickly_and_an_odd_one_by_the_parser():
    assert _PLAIN_BLOCK.fullmatch("From: a@b.example\r\nSubject: x\r\n y\r\n")
    for odd in ("From a@b Mon\r\nSubject: x\r\n", "Subject: x\n", " fold\r\n", "Subject: x\u2028y\r\n"):
        assert _PLAIN_BLOCK.fullmatch(odd) is None
