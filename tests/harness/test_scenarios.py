"""Scenario files: the catalog loads, the committed schema is current, bad files say where and what."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.exo.errors import ConfigError
from fakes.exo.lab import roles
from fakes.exo.tenant import Tenant, default_tenant
from harness.scenario import load_catalog, load_scenario, schema_text

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
FABRIKAM = Tenant.load(Path(__file__).resolve().parents[1] / "data" / "fabrikam.yaml")
GOOD = """\
title: t
option: submission
reference:
  - source: MFD
    text: x
expect:
  - check: stored
    folder: Inbox
advice: a
"""


def write(tmp_path: Path, text: str, name: str = "submission/case.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_catalog_loads_and_covers_every_option():
    cases = load_catalog(ROOT)
    ids = {c.id for c in cases}
    assert len(cases) >= 30
    assert {c.option for c in cases} == {"submission", "direct-send", "relay"}
    assert "submission/tls-1.2-or-later" in ids and "relay/wrong-certificate-domain-refused" in ids
    assert all(c.reference and c.advice for c in cases)


def test_the_committed_schema_is_generated_from_the_model():
    assert (ROOT / "schema.json").read_text() == schema_text(), "run: exoedge schema > scenarios/schema.json"
    document = json.loads(schema_text())
    assert document["additionalProperties"] is False
    assert "expect" in document["required"]


def test_id_is_the_path_without_extension(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD), tmp_path)
    assert scenario.id == "submission/case"


@pytest.mark.parametrize(("edit", "expected"), [
    (("folder: Inbox", "folder: Attic"), "case.yaml:8: expect[0].folder='Attic': Input should be 'Inbox'"),
    (("  - check: stored", "  - check: stroed"), "case.yaml:7: expect[0].check='stroed': is not one of 'connected'"),
    (("advice: a", "advice: a\ncolour: red"), "case.yaml:10: colour: unknown key"),
    (("option: submission", "option: smtp"), "case.yaml:2: option='smtp': Input should be"),
    (("title: t\n", ""), "case.yaml:1: title: is required"),
    (("advice: a", "advice: a: b"), "case.yaml:9: not valid YAML"),
])
def test_bad_scenarios_name_file_line_key_and_value(tmp_path, edit, expected):
    with pytest.raises(ConfigError) as info:
        load_scenario(write(tmp_path, GOOD.replace(*edit)), tmp_path)
    assert expected in str(info.value)


def test_a_case_in_the_wrong_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="option='submission': a submission case must live under"):
        load_scenario(write(tmp_path, GOOD, "relay/case.yaml"), tmp_path)


def test_tenant_overrides_are_validated_at_load_against_the_tenant_in_use(tmp_path):
    text = GOOD + "tenant:\n  org:\n    basic_auth: sometimes\n"
    with pytest.raises(ConfigError, match=r"org.basic_auth='sometimes'"):
        load_scenario(write(tmp_path, text), tmp_path, default_tenant())
    # a mailbox of contoso exists in contoso, not in fabrikam
    text = GOOD + "tenant:\n  mailboxes:\n    alice@contoso.com:\n      smtp_client_authentication: disabled\n"
    load_scenario(write(tmp_path, text), tmp_path, default_tenant())
    with pytest.raises(ConfigError, match=r"mailboxes.alice@contoso.com='alice@contoso.com': no such mailbox"):
        load_scenario(write(tmp_path, text), tmp_path, FABRIKAM)
    # named by its role, the same override fits both
    by_role = text.replace("alice@contoso.com:", '"{internal}":')
    for tenant in (default_tenant(), FABRIKAM):
        load_scenario(write(tmp_path, by_role), tmp_path, tenant)


def test_an_unknown_role_is_refused_with_its_key(tmp_path):
    text = GOOD.replace("folder: Inbox", 'folder: Inbox\n    mailbox: "{intern}"')
    with pytest.raises(ConfigError, match=r"expect\[0\].mailbox='\{intern\}': \{intern\} is not a role; known:"):
        load_scenario(write(tmp_path, text), tmp_path)


def test_roles_fill_a_scenario_for_each_tenant():
    (case,) = [c for c in load_catalog(ROOT) if c.id == "submission/internal-and-external-recipients"]
    assert case.cast(roles(default_tenant())).send.to == ["alice@contoso.com", "partner@example.org"]
    assert case.cast(roles(FABRIKAM)).send.to == ["empfang@fabrikam.net", "partner@example.org"]


def test_every_bad_file_of_a_catalog_is_reported_together(tmp_path):
    write(tmp_path, GOOD.replace("folder: Inbox", "folder: Attic"), "submission/a.yaml")
    write(tmp_path, GOOD.replace("option: submission", "option: smtp"), "submission/b.yaml")
    write(tmp_path, GOOD, "submission/c.yaml")
    with pytest.raises(ConfigError) as info:
        load_catalog(tmp_path)
    text = str(info.value)
    assert "a.yaml:8: expect[0].folder='Attic'" in text and "b.yaml:2: option='smtp'" in text


def test_a_scenario_with_a_key_given_twice_is_refused(tmp_path):
    text = GOOD.replace("severity: must\n", "") + "severity: must\nseverity: info\n"
    with pytest.raises(ConfigError, match=r"case.yaml:\d+: severity: given twice"):
        load_scenario(write(tmp_path, text), tmp_path)
