"""Two runs side by side (firmware 2.1, then 2.2): per case, what got fixed, what broke, what
stayed; per cause, which appeared and which went away. Reads ``results.json`` files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes.exo.errors import ExoEdgeError

GOOD = {"PASS"}
BAD = {"FAIL", "NON-STRICT", "INFO", "ERROR"}


def load_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExoEdgeError(f"{path}: not a results.json of exo-edge ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ExoEdgeError(f"{path}: not a results.json of exo-edge (no cases)")
    return data


@dataclass
class Comparison:
    old: str
    new: str
    fixed: list[tuple[str, str, str]] = field(default_factory=list)  # (case, old verdict, new verdict)
    broken: list[tuple[str, str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # neither: FAIL to ERROR, PASS to SKIP
    unchanged: list[tuple[str, str, str]] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"comparing {self.old} (old) with {self.new} (new)"]
        for title, rows in (("broken", self.broken), ("fixed", self.fixed), ("changed", self.changed)):
            for case, before, after in rows:
                out.append(f"{title:<9} {case}: {before} -> {after}")
        out += [f"new case  {case}: {verdict}" for case, verdict in self.added]
        out += [f"gone      {case}: was {verdict}" for case, verdict in self.removed]
        out.append(f"{len(self.broken)} broken, {len(self.fixed)} fixed, {len(self.changed)} changed otherwise, "
                   f"{len(self.unchanged)} unchanged")
        return out


def _label(run: dict[str, Any]) -> str:
    name = " ".join(str(x) for x in (run.get("sender_name"), run.get("sender_version")) if x)
    return f"{name or run.get('sender', '?')} ({run.get('run', '?')})"


def compare(old: dict[str, Any], new: dict[str, Any]) -> Comparison:
    before = {c["id"]: c["verdict"] for c in old["cases"]}
    after = {c["id"]: c["verdict"] for c in new["cases"]}
    result = Comparison(_label(old), _label(new))
    for case in sorted(before.keys() & after.keys()):
        row = (case, before[case], after[case])
        if before[case] == after[case]:
            result.unchanged.append(row)
        elif before[case] in GOOD and after[case] in BAD:
            result.broken.append(row)
        elif before[case] in BAD and after[case] in GOOD:
            result.fixed.append(row)
        else:
            result.changed.append(row)
    result.added = [(case, after[case]) for case in sorted(after.keys() - before.keys())]
    result.removed = [(case, before[case]) for case in sorted(before.keys() - after.keys())]
    return result
