"""Which scenarios a run uses: the catalog bundled with exo-edge, a user's own, or both.

The bundled catalog ships inside the package (``harness/bundled_scenarios``, the project's
``scenarios/`` directory), so ``pytest -m scenario`` and ``exoedge run`` work in any repository.
A user's catalog either adds cases to it (a case with the same id replaces the bundled one) or
replaces it. ``Catalog.describe()`` is what results record: where each case came from, the
package version and a digest of every file, so a certificate can be reproduced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from fakes.exo.errors import UsageError
from fakes.exo.tenant import Tenant
from harness.scenario import Scenario, load_catalog

Mode = Literal["add", "replace"]
MODES = ("add", "replace")


def bundled_root() -> Path:
    return (Path(__file__).parent / "bundled_scenarios").resolve()


def version() -> str:
    try:
        return metadata.version("exo-edge")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+checkout"


@dataclass(frozen=True)
class Catalog:
    """The directories scenarios are read from, in order: a later one's case replaces an
    earlier one's with the same id."""

    roots: tuple[Path, ...]

    @classmethod
    def choose(cls, user: Path | None = None, mode: Mode = "add") -> Catalog:
        bundled = bundled_root()
        if user is None:
            return cls((bundled,))
        user = user.resolve()
        if not user.is_dir():
            raise UsageError(f"no scenario directory {user}")
        if mode not in MODES:
            raise UsageError(f"catalog mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "replace" or user == bundled:
            return cls((user,))
        return cls((bundled, user))

    def root_of(self, path: Path) -> Path | None:
        """The root a scenario file belongs to (the last one that holds it)."""
        path = path.resolve()
        for root in reversed(self.roots):
            if root == path or root in path.parents:
                return root
        return None

    def files(self) -> dict[str, Path]:
        """Every scenario file by case id, later roots replacing earlier ones."""
        out: dict[str, Path] = {}
        for root in self.roots:
            for path in sorted(root.rglob("*.yaml")):
                out[path.relative_to(root).with_suffix("").as_posix()] = path
        return out

    def load(self, tenant: Tenant | None = None) -> list[Scenario]:
        by_id: dict[str, Scenario] = {}
        for root in self.roots:
            for scenario in load_catalog(root, tenant):
                by_id[scenario.id] = scenario
        return [by_id[case_id] for case_id in sorted(by_id)]

    def digest(self) -> str:
        """SHA-256 over every case's id and bytes: the same catalog, the same digest."""
        hasher = hashlib.sha256()
        for case_id, path in sorted(self.files().items()):
            hasher.update(case_id.encode() + b"\0" + path.read_bytes() + b"\0")
        return hasher.hexdigest()

    def describe(self) -> dict[str, Any]:
        bundled = bundled_root()
        return {
            "sources": ["bundled" if root == bundled else str(root) for root in self.roots],
            "version": version(),
            "digest": self.digest(),
            "cases": len(self.files()),
        }
