"""pytest integration of exo-edge (registered through the ``pytest11`` entry point).

- Collects the scenario catalog as items marked ``scenario``: the one bundled with exo-edge, plus
  (or instead of) the user's ``--exo-scenarios DIR``. ``pytest -m scenario`` runs it against
  ``--exo-sender`` (``reference:NAME``, ``command:...``, ``python:mod:fn``, ``manual``); asked
  to run scenarios and finding none is a usage error, never a silent empty run. FAIL fails the
  item, ERROR errors it (in setup), SKIP and INFO "not exercised" skip it (what the case judges never
  happened: no pass); NON-STRICT and INFO pass with the verdict in ``user_properties``, so
  ``--junitxml`` and xdist carry it.
- Writes ``results.json``, ``junit.xml`` and ``index.html`` under ``--exo-report`` at the end.
- ``exo_edge``: the one running edge of the session (the scenarios use it too);
  ``exo_edge_clean``: the same edge reset for one test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.edge import Edge, EdgeThread
from fakes.exo.errors import ConfigError, ExoEdgeError, InternalError
from fakes.exo.tenant import Tenant, default_tenant
from harness.catalog import MODES, Catalog
from harness.runner import CaseResult, Runner, Verdict
from harness.scenario import Scenario, load_scenario
from harness.sender_spec import parse_sender
from harness.senders import Sender

EDGE = pytest.StashKey["EdgeThread"]()
TENANT = pytest.StashKey[Tenant]()
RUNNER = pytest.StashKey[Runner]()
RESULTS = pytest.StashKey[list[CaseResult]]()
SENDER = pytest.StashKey[Sender]()
TEMP_STATE = pytest.StashKey[Path]()
CATALOG = pytest.StashKey[Catalog]()
WORKER_EDGE = pytest.StashKey[dict[str, Any]]()  # xdist: where a worker's edge listened


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("exo-edge", "exo-edge conformance scenarios")
    group.addoption("--exo-sender", help="reference:NAME | command:CMD | python:module:callable | manual "
                                         "(ini: exo_sender; default reference:submission)")
    group.addoption("--exo-option", choices=["submission", "direct-send", "relay"],
                    help="the option a command/python/manual sender uses (ini: exo_option)")
    group.addoption("--exo-connector", choices=["ip", "certificate"], help="relay senders: which connector")
    group.addoption("--exo-tenant", help="tenant YAML (default: the tenant bundled with exo-edge)")
    group.addoption("--exo-report", help="directory for results.json, junit.xml, index.html (ini: exo_report)")
    group.addoption("--exo-sender-name", help="the device or app under test, as the report names it")
    group.addoption("--exo-sender-version", help="its firmware or release, for the report")
    group.addoption("--exo-note", action="append", default=[], help="a note for the report (repeatable)")
    group.addoption("--exo-state-dir", help="CA, records and store of the edge (default: a temporary directory)")
    group.addoption("--exo-scenarios", metavar="DIR",
                    help="your own scenario directory (ini: exo_scenarios; default: the bundled catalog alone)")
    group.addoption("--exo-catalog-mode", choices=list(MODES),
                    help="add: your cases join the bundled catalog (same id: yours wins); replace: only "
                         "yours run (ini: exo_catalog_mode; default add)")
    parser.addini("exo_sender", "default --exo-sender", default="reference:submission")
    parser.addini("exo_option", "default --exo-option", default="submission")
    parser.addini("exo_report", "default --exo-report", default="reports")
    parser.addini("exo_scenarios", "your own scenario directory, relative to the rootdir", default="")
    parser.addini("exo_catalog_mode", "add | replace: how exo_scenarios joins the bundled catalog",
                  default="add")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"--exo-{name.replace('_', '-')}")
    return value if value is not None else config.getini(f"exo_{name}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario: a conformance scenario from the exo-edge catalog")
    config.stash[RESULTS] = []
    tenant_file = config.getoption("--exo-tenant")
    try:
        config.stash[TENANT] = Tenant.load(tenant_file) if tenant_file else default_tenant()
    except ConfigError as exc:
        raise pytest.UsageError(f"--exo-tenant: {exc}") from None
    config.stash[SENDER] = _sender(config)  # a bad --exo-sender is a usage error before anything runs
    config.stash[CATALOG] = catalog = _catalog(config)
    if _scenarios_wanted(config):
        # the bundled catalog lives in the package, outside the user's tree: collect it too
        for root in catalog.roots:
            if not any(Path(arg).resolve() in (root, *root.parents) for arg in config.args if Path(arg).exists()):
                config.args.append(str(root))


def _catalog(config: pytest.Config) -> Catalog:
    user = _option(config, "scenarios")
    try:
        return Catalog.choose(Path(config.rootpath, user) if user else None, _option(config, "catalog_mode"))
    except ExoEdgeError as exc:
        raise pytest.UsageError(f"--exo-scenarios: {exc}") from None


def _scenarios_wanted(config: pytest.Config) -> bool:
    """Asked for scenarios: ``-m scenario``, or an exo-edge option given on the command line."""
    explicit = any(config.getoption(f"--exo-{name}") is not None for name in ("sender", "scenarios"))
    return explicit or "scenario" in (config.getoption("markexpr") or "")


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not _scenarios_wanted(config):
        return
    if not any(isinstance(item, ScenarioItem) for item in session.items):
        where = ", ".join(str(root) for root in config.stash[CATALOG].roots)
        raise pytest.UsageError(f"no scenario was collected: looked in {where} (options --exo-scenarios and "
                                "--exo-catalog-mode, ini exo_scenarios); check the path and the -m and -k "
                                "expressions")


def _sender(config: pytest.Config) -> Sender:
    try:
        return parse_sender(_option(config, "sender"), _option(config, "option"),
                            config.getoption("--exo-connector"))
    except ExoEdgeError as exc:
        raise pytest.UsageError(str(exc)) from None


def shared_edge(config: pytest.Config) -> Edge:
    """The session's edge, started on first use."""
    if EDGE not in config.stash:
        state = config.getoption("--exo-state-dir")
        if state is None:
            state = tempfile.mkdtemp(prefix="exo-edge-")
            config.stash[TEMP_STATE] = Path(state)
        config.stash[EDGE] = EdgeThread(Edge(config.stash[TENANT], state_dir=Path(state)))
        config.stash[EDGE].start()
    return config.stash[EDGE].edge


def shared_runner(config: pytest.Config) -> Runner:
    if RUNNER not in config.stash:
        config.stash[RUNNER] = Runner(shared_edge(config), config.stash[SENDER], tenant=config.stash[TENANT])
    return config.stash[RUNNER]


def pytest_unconfigure(config: pytest.Config) -> None:
    if EDGE in config.stash:
        config.stash[EDGE].stop()
    if TEMP_STATE in config.stash:
        shutil.rmtree(config.stash[TEMP_STATE], ignore_errors=True)


# -- scenarios as test items ------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".yaml":
        return None
    catalog = parent.config.stash[CATALOG]
    root = catalog.root_of(file_path)
    if root is None:
        return None
    case_id = file_path.resolve().relative_to(root).with_suffix("").as_posix()
    if catalog.files().get(case_id) != file_path.resolve():
        return None  # a case of the bundled catalog that the user's catalog replaces
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        root = self.config.stash[CATALOG].root_of(self.path)
        if root is None:
            raise InternalError("expected root is not None")
        try:
            scenario = load_scenario(self.path.resolve(), root, self.config.stash[TENANT])
        except ConfigError as exc:
            raise self.CollectError(str(exc)) from None
        item = ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario)
        item.add_marker(pytest.mark.scenario)
        yield item


class ScenarioOutcome(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.reason)
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.result: CaseResult | None = None

    def setup(self) -> None:
        result = shared_runner(self.config).run(self.scenario)
        self.result = result
        self.config.stash[RESULTS].append(result)
        self.user_properties.append(("verdict", str(result.verdict)))
        self.user_properties.append(("reason", result.reason))
        if result.verdict == Verdict.SKIP or not result.exercised:
            # reported at the scenario file, not here; a case not exercised is no pass
            raise pytest.skip.Exception(result.reason, _use_item_location=True)
        if result.verdict == Verdict.ERROR:
            raise ScenarioOutcome(result)

    def runtest(self) -> None:
        if self.result is None:
            raise InternalError("expected self.result is not None")
        if self.result.verdict == Verdict.FAIL:
            raise ScenarioOutcome(self.result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if not isinstance(excinfo.value, ScenarioOutcome):
            return str(super().repr_failure(excinfo))
        result = excinfo.value.result
        lines = [f"{result.verdict}: {self.scenario.title} ({self.scenario.id})", ""]
        for outcome in result.outcomes:
            mark = "ok " if outcome.passed else ("n/a" if outcome.passed is None else "BAD")
            lines.append(f"  [{mark}] {outcome.check}: {outcome.message}")
        if result.verdict == Verdict.ERROR:
            lines.append(f"  {result.reason}")
        lines += ["", f"What to change: {self.scenario.advice}", ""]
        for session in result.transcript:
            lines.append(f"  # {session['endpoint']} from {session['peer']}")
            lines += [f"  {line}" for line in session["lines"]]
        return "\n".join(lines)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.id}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    results = config.stash.get(RESULTS, [])
    if hasattr(config, "workerinput"):  # an xdist worker: its results go to the controller
        if results:
            config.workeroutput["exo_cases"] = json.dumps([_portable(r) for r in results])  # type: ignore[attr-defined]
            config.workeroutput["exo_edge"] = json.dumps(shared_runner(config).edge.describe())  # type: ignore[attr-defined]
        return
    if not results:
        return
    from harness.report import Run, tenant_digest, write_reports

    runner = config.stash.get(RUNNER, None)
    edge = runner.edge.describe() if runner is not None else config.stash.get(WORKER_EDGE, {})
    run = Run(sender=config.stash[SENDER].name, tenant=config.stash[TENANT].tenant, edge=edge,
              results=sorted(results, key=lambda r: r.started), started=min(r.started for r in results),
              catalog=config.stash[CATALOG].describe(), sender_name=config.getoption("exo_sender_name"),
              sender_version=config.getoption("exo_sender_version"), notes=config.getoption("exo_note"),
              tenant_digest=tenant_digest(config.stash[TENANT]))
    if runner is not None:
        run.secrets = runner.edge.secrets
    directory = Path(config.rootpath, _option(config, "report"), run.name)
    paths = write_reports(directory, run)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"exo-edge report: {paths['html']}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker finished; take in its results for the one report (secrets were
    masked in the worker, where they were known)."""
    output = getattr(node, "workeroutput", {})
    if "exo_cases" not in output:
        return
    config = node.config
    config.stash.setdefault(WORKER_EDGE, json.loads(output["exo_edge"]))
    catalog = config.stash[CATALOG]
    for data in json.loads(output["exo_cases"]):
        path = Path(data["path"])
        root = catalog.root_of(path)
        if root is None:
            raise InternalError(f"{path}: a worker ran a case from outside the catalog's folders")
        config.stash[RESULTS].append(_restored(data, load_scenario(path, root)))


def _portable(result: CaseResult) -> dict[str, Any]:
    return {**result.as_dict(), "path": result.scenario.path}


def _restored(data: dict[str, Any], scenario: Scenario) -> CaseResult:
    return CaseResult.from_dict(data, scenario)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def exo_edge(pytestconfig: pytest.Config) -> Edge:
    """The running edge of this test session, on 127.0.0.1 (ephemeral ports)."""
    return shared_edge(pytestconfig)


@pytest.fixture
def exo_edge_clean(exo_edge: Edge, pytestconfig: pytest.Config) -> Iterator[Edge]:
    """The session's edge, reset to the configured tenant with no mail, faults or quota use."""
    reset(exo_edge, pytestconfig.stash[TENANT])
    yield exo_edge
    reset(exo_edge, pytestconfig.stash[TENANT])


def reset(edge: Edge, tenant: Tenant | None = None) -> None:
    edge.reset(tenant or default_tenant(), store=True)
