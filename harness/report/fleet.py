"""The fleet report: one page for many devices (``index.html``), and the same as data
(one record per device, naming its address)."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from fakes.exo.observed import Tls
from harness.fleet import MAX_DEVICES, OPTION_NAMES, Judged

ORDER = {"would fail": 0, "not judged": 1, "would work": 2, "sent nothing": 3}


def ordered(judged: list[Judged]) -> list[Judged]:
    return sorted(judged, key=lambda j: (ORDER.get(j.verdict, 9), j.device.address))


def fleet_causes(judged: list[Judged]) -> list[tuple[str, int]]:
    """Causes across the fleet, the commonest first: ("offers only TLSv1: ...", 23)."""
    labels: dict[str, str] = {}
    counts: collections.Counter[str] = collections.Counter()
    for j in judged:
        if j.cause_key and j.cause:
            labels.setdefault(j.cause_key, j.cause)
            counts[j.cause_key] += 1
    return [(labels[key], count) for key, count in counts.most_common()]


def write_json(path: Path, judged: list[Judged], source: str, *, unfollowed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"source": source, "unfollowed_devices": unfollowed, "devices": [j.as_dict() for j in ordered(judged)]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def tls_read(judged: list[Judged]) -> tuple[int, int]:
    """Of the TLS connections in the devices' sections, how many were read inside (keys at hand)."""
    tls = [e for j in judged for e in j.device.events if isinstance(e, Tls)]
    return sum(not e.hidden for e in tls), len(tls)


def write_html(path: Path, judged: list[Judged], source: str, *, capture: bool, keylog: str | None = None,
               unfollowed: int = 0) -> Path:
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("fleet.html").render(
        judged=ordered(judged), causes=fleet_causes(judged), source=source, capture=capture, keylog=keylog,
        tls_read=tls_read(judged), unfollowed=unfollowed, most=MAX_DEVICES,
        option_names=OPTION_NAMES, when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
