"""Mutation smoke test: disable each check in turn; the verdict matrix must go red every time.

    .venv/bin/python tests/mutation_smoke.py        (or: tox -e mutation)

A check whose disabling leaves the matrix green is one no test relies on: the script names it
and exits 1. Checks the catalog never uses are listed, not run. About 30 s a check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.checks import CHECKS  # noqa: E402
from harness.scenario import load_catalog  # noqa: E402


def main() -> int:
    used = {check.check for case in load_catalog(ROOT / "scenarios") for check in case.expect}
    survivors = []
    for name in sorted(CHECKS):
        if name not in used:
            print(f"{name:<26} not used by the catalog")
            continue
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly",
             "tests/harness/test_verdict_matrix.py"],
            cwd=ROOT, env={**os.environ, "EXO_DISABLE_CHECK": name}, capture_output=True, text=True, check=False,
        )
        red = done.returncode != 0
        print(f"{name:<26} {'red (caught)' if red else 'GREEN: nothing notices this check is gone'}", flush=True)
        if not red:
            survivors.append(name)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
