"""exo-edge where its users work: the wheel alone, in a fresh virtual environment, in an empty
directory that is not our checkout, runs the catalog it carries, with ``exoedge run`` and with
``pytest -m scenario`` (JUnit written), as a QA pipeline would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
ROOT = Path(__file__).resolve().parents[2]
APP_SENDER = ROOT / "tests" / "senders" / "smtplib_sender.py"


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with nothing but the wheel built from this checkout (and its dependencies)."""
    pytest.importorskip("build")
    work = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", work / "dist", ROOT, cwd=work)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("exo_edge-*.whl")
    (sdist,) = (work / "dist").glob("exo_edge-*.tar.gz")
    listing = run("tar", "tzf", sdist, cwd=work).stdout
    assert "scenarios/submission/port-587-not-465.yaml" in listing  # the sdist carries the catalog too
    venv = work / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=work).returncode == 0
    pip = run(venv / "bin" / "pip", "install", "-q", wheel, cwd=work)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def test_exoedge_run_from_the_wheel_in_an_empty_directory(installed, tmp_path):
    done = run(installed / "bin" / "exoedge", "run", "--report", "reports", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = tmp_path / "reports" / "latest" / "results.json"
    data = json.loads(results.read_text())
    assert data["catalog"]["sources"] == ["bundled"] and data["catalog"]["cases"] >= 36
    assert {case["verdict"] for case in data["cases"]} <= {"PASS", "SKIP"}
    assert sum(case["verdict"] == "PASS" for case in data["cases"]) >= 24


def test_pytest_m_scenario_from_the_wheel_with_a_command_sender(installed, tmp_path):
    shutil.copy(APP_SENDER, tmp_path / "send.py")  # the app's own mail code, in the app's repository
    done = run(installed / "bin" / "python", "-m", "pytest", "-m", "scenario", "--exo-sender",
               f"command:{installed / 'bin' / 'python'} send.py", "--junitxml", "junit.xml", "-p", "no:cacheprovider",
               cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    verdicts = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}.get("verdict")
                for case in cases}
    assert len(verdicts) >= 36 and "submission/port-587-not-465" in "".join(verdicts)
    # the app signs in with a password: the OAuth case says it should get tokens of its own
    assert {name: v for name, v in verdicts.items() if v not in ("PASS", "SKIP")} == {
        "oauth/device-code-then-xoauth2": "NON-STRICT"}
    assert list((tmp_path / "reports").glob("*/index.html"))


def readme_recipes() -> dict[str, list[str]]:
    """The shell commands of each CI recipe in the README, in order."""
    import re

    import yaml

    text = (ROOT / "README.md").read_text()
    out = {}
    for name, block in re.findall(r"<!-- recipe: (\w+) -->\n```yaml\n(.*?)```", text, re.S):
        document = yaml.safe_load(block)
        if name == "github":
            steps = document["jobs"]["exo-edge"]["steps"]
            out[name] = [step["run"] for step in steps if "run" in step]
        else:
            out[name] = list(document["exo-edge"]["script"])
    return out


@pytest.mark.parametrize("recipe", ["github", "gitlab"])
def test_the_readme_recipes_work_as_written(installed, tmp_path, recipe):
    commands = readme_recipes()[recipe]
    assert commands[0] == "pip install exo-edge"  # here: the wheel built from this checkout, installed above
    shutil.copy(APP_SENDER, tmp_path / "send.py")
    env_path = f"{installed / 'bin'}:/usr/bin:/bin"
    for command in commands[1:]:
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={"PATH": env_path, "HOME": str(tmp_path)}, check=False)
        assert done.returncode == 0, command + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "reports" / "junit.xml").exists()
    assert list((tmp_path / "reports").glob("*/index.html"))
