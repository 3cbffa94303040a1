"""Tenant files: what loads, and how a bad one is reported (file, line, key path, value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.exo.errors import ConfigError
from fakes.exo.tenant import Tenant, default_tenant

GOOD = """\
schema_version: 1
tenant: fabrikam
accepted_domains: [fabrikam.com]
mailboxes:
  - address: printer@fabrikam.com
    password: "p"
    send_as: [reception@fabrikam.com]
  - address: bob@fabrikam.com
"""


def test_default_tenant_is_contoso_as_the_guide_names_it():
    tenant = default_tenant()
    assert tenant.mx_host == "contoso-com.mail.protection.outlook.com"
    assert tenant.initial_domain == "contoso.onmicrosoft.com"
    scanner = tenant.mailbox("Scanner@Contoso.com")
    assert scanner is not None and tenant.smtp_auth_enabled(scanner)
    alice = tenant.mailbox("alice@contoso.com")
    assert alice is not None and not tenant.smtp_auth_enabled(alice)  # inherits the org's "disabled"


def test_defaults_follow_the_reference():
    tenant = Tenant.from_yaml(GOOD)
    assert tenant.limits.messages_per_minute == 30
    assert tenant.limits.recipients_per_day == 10_000
    assert tenant.limits.concurrent_connections_per_mailbox == 3
    assert tenant.org.basic_auth == "allowed"
    assert tenant.org.smtp_client_authentication_disabled is True


def test_per_mailbox_setting_overrides_the_org():
    tenant = Tenant.from_yaml(GOOD).with_overrides({
        "org": {"smtp_client_authentication_disabled": False},
        "mailboxes": [{"address": "printer@fabrikam.com", "smtp_client_authentication": "disabled"},
                      {"address": "bob@fabrikam.com"}],
    })
    printer, bob = tenant.mailboxes
    assert not tenant.smtp_auth_enabled(printer)
    assert tenant.smtp_auth_enabled(bob)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("send_as: [reception@fabrikam.com]", "send_as: [bob]"),
         "t.yaml:7: mailboxes[0].send_as[0]='bob': is not an email address"),
        (("tenant: fabrikam", "tenant: fabrikam\nlimits: {messages_per_minute: -1}"),
         "t.yaml:3: limits.messages_per_minute=-1: Input should be greater than or equal to 1"),
        (("schema_version: 1", "schema_version: 1\ncolour: blue"), "t.yaml:2: colour: unknown key"),
        (("schema_version: 1\n", ""), "t.yaml:1: schema_version: is required"),
        (("  - address: bob@fabrikam.com", "  - address: bob@example.org"), "not in an accepted domain"),
        (("accepted_domains: [fabrikam.com]", "accepted_domains: [fabrikam.com"), "t.yaml:"),
    ],
)
def test_bad_tenant_files_name_file_line_key_and_value(edit, expected):
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(GOOD.replace(*edit), "t.yaml")
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_every_problem_in_a_file_is_reported_at_once():
    text = GOOD.replace("send_as: [reception@fabrikam.com]", "send_as: [bob]\n    colour: red")
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(text, "t.yaml")
    lines = str(info.value).splitlines()
    assert any("send_as[0]='bob'" in line for line in lines)
    assert any("mailboxes[0].colour: unknown key" in line for line in lines)


@pytest.mark.parametrize("key", ["passwd", "kennwort", "pw", "colour"])
def test_an_unknown_key_is_named_and_its_value_never_shown(key):
    """A mistyped key may hold a password under any name: the error names the key, not its value."""
    text = GOOD.replace("send_as: [reception@fabrikam.com]",
                        f"send_as: [reception@fabrikam.com]\n    {key}: Geheim-2026!")
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(text, "t.yaml")
    assert f"mailboxes[0].{key}: unknown key" in str(info.value)
    assert "Geheim" not in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read the tenant file"):
        Tenant.load(tmp_path / "nope.yaml")


def test_connector_needs_exactly_one_way_to_match():
    with pytest.raises(ConfigError, match=r"connectors\[0\].*one"):
        Tenant.from_yaml(GOOD + "connectors:\n  - name: both\n    sender_ip_ranges: [127.0.0.9/32]\n"
                                "    certificate_domain: relay.fabrikam.com\n", "t.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD + "tenant: contoso\n", "<tenant>:9: tenant: given twice (first on line 2)"),
    (GOOD.replace("  - address: bob@fabrikam.com", "  - address: printer@fabrikam.com\n    password: hunter2-x"),
     "<tenant>:8: mailboxes[1].address='printer@fabrikam.com': is listed twice"),
    (GOOD + "x: &a [1, 2]\ny: *a\n", "<tenant>:10: aliases (*a) are not allowed"),
    (GOOD + "z: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
    (GOOD.replace("tenant: fabrikam", "tenant: " + "f" * 300), "tenant='ffffffffffffffff"),
])
def test_bad_files_are_one_line_with_no_secret_and_no_traceback(text, expected):
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(text)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "hunter2" not in message and "'p'" not in message and len(message) < 300


def test_a_password_in_an_error_is_masked():
    bad = GOOD.replace('password: "p"', "password: [not, text]")
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(bad)
    assert "mailboxes[0].password='********'" in str(info.value)


def test_a_file_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "tenant.yaml"
    path.write_bytes(GOOD.replace("fabrikam.com]", "b\xfcro.com]").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"tenant.yaml:3: not UTF-8 text \(byte 0xfc\)"):
        Tenant.load(path)


def test_a_billion_laughs_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    with pytest.raises(ConfigError, match="aliases"):
        Tenant.from_yaml(bomb)


APPS = """apps:
  - client_id: 6d1e2f0a-3b4c-4d5e-8f90-a1b2c3d4e5f6
"""


@pytest.mark.parametrize(("edit", "expected"), [
    (("[fabrikam.com]", "[" + "l" * 64 + ".com]"),
     "t.yaml:3: accepted_domains[0]='" + "l" * 64 + ".com': has a label of 64 octets"),
    (("[fabrikam.com]", "[-fabrikam.com]"),
     "t.yaml:3: accepted_domains[0]='-fabrikam.com': has a label that begins or ends with a hyphen ('-fabrikam')"),
    (("[fabrikam.com]", "[" + ".".join(["l" * 60] * 5) + ".com]"), "is 308 octets long; a domain name has at most 253"),
    (("[fabrikam.com]", "[fabrikam.com, Fabrikam.COM]"),
     "t.yaml:3: accepted_domains[1]='fabrikam.com': is listed twice"),
    (("[fabrikam.com]", "[büro.de, fabrikam.com]"),
     "t.yaml:3: accepted_domains[0]='büro.de': is not an ASCII domain name: write it as its A-label 'xn--bro-hoa.de'"),
    (("  - address: bob@fabrikam.com", "  - address: jörg@fabrikam.com"),
     "t.yaml:8: mailboxes[1].address='jörg@fabrikam.com': is not an ASCII address"),
    (("[fabrikam.com]", "[" + "a" * 30 + "." + "b" * 33 + ".com]"),
     "gives an MX host label of 68 octets (at most 63): name the tenant's MX host with mx:"),
    (("    send_as: [reception@fabrikam.com]", "    apps: [00000000-0000-0000-0000-000000000bad]"),
     "t.yaml:7: mailboxes[0].apps[0]='00000000-0000-0000-0000-000000000bad': is the client_id of no app in apps"),
    (("schema_version: 1\n", "schema_version: 1\n" + APPS + APPS.removeprefix("apps:\n").replace("  -", "  -", 1)),
     "apps[1].client_id='6d1e2f0a-3b4c-4d5e-8f90-a1b2c3d4e5f6': is listed twice"),
    (("schema_version: 1\n", "schema_version: 1\nconnectors:\n  - name: c\n    sender_ip_ranges: [127.0.0.1/24]\n"),
     "t.yaml:4: connectors[0].sender_ip_ranges[0]='127.0.0.1/24': has host bits set: the range is 127.0.0.0/24"),
    (("schema_version: 1\n", "schema_version: 1\nconnectors:\n  - name: c\n    sender_ip_ranges: [127.0.0.1/33]\n"),
     "t.yaml:4: connectors[0].sender_ip_ranges[0]='127.0.0.1/33': is not an address range in CIDR form"),
    (("schema_version: 1\n", "schema_version: 1\ndns:\n  spf_ip4: ['::1/128']\n"),
     "t.yaml:3: dns.spf_ip4[0]='::1/128': is an IPv6 range where an ip4 range is due"),
])
def test_tenants_are_validated_as_dns_and_entra_validate_them_in_one_line(edit, expected):
    with pytest.raises(ConfigError) as info:
        Tenant.from_yaml(GOOD.replace(*edit), "t.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message, message


def test_a_long_domain_runs_with_the_mx_host_it_names_and_idn_in_a_label_form():
    long = "a" * 30 + "." + "b" * 33 + ".com"
    named = "tenant: fabrikam\nmx: fabrikam-01c.mail.protection.outlook.com"
    tenant = Tenant.from_yaml(GOOD.replace("[fabrikam.com]", f"[fabrikam.com, {long}, xn--bro-hoa.de]")
                              .replace("tenant: fabrikam", named))
    assert tenant.mx_host == "fabrikam-01c.mail.protection.outlook.com"
    assert tenant.is_accepted(f"o'brien+scan@{long}") and tenant.is_accepted("x@XN--BRO-HOA.de")
