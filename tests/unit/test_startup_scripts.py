"""core.startup_scripts: templates, variables, requests and the after-use rule, table-driven."""

from __future__ import annotations

import json
import random
import string

import pytest

from dask_operator.core import startup_scripts as ss
from dask_operator.errors import StartupScriptError

NAME = "autoscaler-startup-script-gpu-a100-1f2e3d4c"
REQUEST = {"script_name": NAME, "hostname": "gpu-a100-1f2e3d4c", "node_group": "gpu-a100",
           "instance_type": "1A100.22V", "location": "FIN-01"}


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("text, variables, expected", [
    pytest.param("", {}, "", id="empty"),
    pytest.param("echo hi", {}, "echo hi", id="no-action"),
    pytest.param("{{ .A }}", {"A": "1"}, "1", id="spaces"),
    pytest.param("{{.A}}", {"A": "1"}, "1", id="no-spaces"),
    pytest.param("x={{ .A }}; y={{ .B }}; z={{ .A }}", {"A": "1", "B": "2"}, "x=1; y=2; z=1", id="repeated"),
    pytest.param("{{ .A }}", {"A": "{{ .B }}", "B": "no"}, "{{ .B }}", id="values-are-not-templates"),
    pytest.param("a\n{{\n.A\n}}\nb", {"A": "1"}, "a\n1\nb", id="newlines-inside-braces"),
    pytest.param("echo '{\"k\": 1}' ${X}", {}, "echo '{\"k\": 1}' ${X}", id="shell-braces-kept"),
    pytest.param("{{ .A }}", {"A": "1", "UNUSED": "2"}, "1", id="extra-variables-ignored"),
])
def test_render(text, variables, expected):
    assert ss.parse_template(text).render(variables) == expected


@pytest.mark.parametrize("text, message", [
    pytest.param("{{ .A | printf }}", "line 1: only {{ .NAME }} substitutions", id="pipeline"),
    pytest.param("a\n{{ if .A }}x{{ end }}", "line 2: only", id="if-with-line"),
    pytest.param("{{ A }}", "only", id="no-dot"),
    pytest.param("{{ .A.B }}", "only", id="field-of-field"),
    pytest.param("{{ . }}", "only", id="bare-dot"),
    pytest.param("{{- .A -}}", "only", id="trim-markers"),
    pytest.param("x\ny {{ .A", "line 2: an unclosed {{", id="unclosed"),
])
def test_parse_refuses_other_actions_naming_the_line(text, message):
    with pytest.raises(StartupScriptError, match="^template: ") as e:
        ss.parse_template(text)
    assert message in str(e.value)


def test_render_without_a_value_names_the_variables():
    with pytest.raises(StartupScriptError, match="no value for A, B"):
        ss.parse_template("{{ .B }}{{ .A }}").render({})


def test_names():
    assert ss.parse_template("{{ .A }} {{.B}} {{ .A }}").names == {"A", "B"}


def test_render_matches_plain_replacement_on_random_templates():
    """Seeded: text without braces around random substitutions renders as str.replace would."""
    rng = random.Random(20261123)
    alphabet = string.ascii_letters + string.digits + " \n$'\"-_/"
    for _ in range(300):
        names = [rng.choice(["A", "B", "HOSTNAME", "JOIN_TOKEN"]) for _ in range(rng.randint(0, 6))]
        chunks = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(len(names) + 1)]
        spaced = [rng.choice(["{{ .%s }}", "{{.%s}}", "{{  .%s\t}}"]) % n for n in names]
        text = chunks[0] + "".join(s + c for s, c in zip(spaced, chunks[1:]))
        values = {n: "".join(rng.choice(alphabet + "{}") for _ in range(rng.randint(0, 8))) for n in set(names)}
        plain = chunks[0] + "".join(values[n] + c for n, c in zip(names, chunks[1:]))
        template = ss.parse_template(text)
        assert template.render(values) == plain
        assert template.names == set(names)


# ---------------------------------------------------------------- variables


@pytest.mark.parametrize("items, expected", [
    pytest.param([], {}, id="none"),
    pytest.param(["A=1", "B="], {"A": "1", "B": ""}, id="empty-value"),
    pytest.param(["A=x=y"], {"A": "x=y"}, id="equals-in-value"),
])
def test_assignments(items, expected):
    assert ss.parse_assignments(items, "--var") == expected


@pytest.mark.parametrize("items, message", [
    pytest.param(["A"], "expected NAME=VALUE", id="no-equals"),
    pytest.param(["1A=x"], "expected NAME=VALUE", id="bad-name"),
    pytest.param(["A=1", "A=2"], "A given twice", id="twice"),
])
def test_bad_assignments_name_the_flag_and_never_the_value(items, message):
    with pytest.raises(StartupScriptError, match="^--var: ") as e:
        ss.parse_assignments(items, "--var")
    assert message in str(e.value) and "=2" not in str(e.value) and "=x" not in str(e.value)


def test_secret_refs():
    assert ss.parse_secret_refs(["T=join/token", "C=verda-credentials/client.id"]) == {
        "T": ("join", "token"), "C": ("verda-credentials", "client.id")}


@pytest.mark.parametrize("item", ["T=join", "T=Join/token", "T=join/", "T=join/a b", "T=/token"])
def test_bad_secret_refs(item):
    with pytest.raises(StartupScriptError, match="^--secret: T: expected SECRET/KEY"):
        ss.parse_secret_refs([item])


@pytest.mark.parametrize("template, fixed, secret, message", [
    pytest.param("{{ .A }}{{ .B }}", {"A": "1"}, {"B": ("s", "k")}, None, id="all-given"),
    pytest.param("{{ .HOSTNAME }}", {}, {}, None, id="per-instance-given"),
    pytest.param("{{ .A }}", {}, {}, "template: uses A, which no --var or --secret gives", id="missing"),
    pytest.param("", {"HOSTNAME": "x"}, {}, "--var: HOSTNAME is set per instance; choose another name",
                 id="var-shadows"),
    pytest.param("", {}, {"SCRIPT_NAME": ("s", "k")}, "--secret: SCRIPT_NAME is set per instance; choose another name",
                 id="secret-shadows"),
    pytest.param("", {"A": "1"}, {"A": ("s", "k")}, "--var and --secret: A given by both", id="both"),
])
def test_check_variables(template, fixed, secret, message):
    if message is None:
        ss.check_variables(ss.parse_template(template), fixed, secret)
    else:
        with pytest.raises(StartupScriptError) as e:
            ss.check_variables(ss.parse_template(template), fixed, secret)
        assert str(e.value) == message


# ---------------------------------------------------------------- requests


def test_request_and_its_variables():
    request = ss.parse_request(json.dumps(REQUEST).encode())
    assert request.body() == REQUEST
    assert request.variables() == {"SCRIPT_NAME": NAME, "HOSTNAME": "gpu-a100-1f2e3d4c", "NODE_GROUP": "gpu-a100",
                                   "INSTANCE_TYPE": "1A100.22V", "LOCATION": "FIN-01",
                                   "PROVIDER_ID_PREFIX": "datacrunch://"}


@pytest.mark.parametrize("body, message", [
    pytest.param(b"\xff", "body: not a UTF-8 JSON object", id="not-utf8"),
    pytest.param(b"{", "body: not a UTF-8 JSON object", id="not-json"),
    pytest.param(b"[]", "body: expected a JSON object, got list", id="not-object"),
    pytest.param({**REQUEST, "extra": 1}, "extra: unknown field", id="unknown-field"),
    pytest.param({k: v for k, v in REQUEST.items() if k != "hostname"}, "hostname: required",
                 id="missing"),
    pytest.param({**REQUEST, "script_name": "other-name"}, "script_name: 'other-name' is not seed 002's script name", id="foreign-script-name"),
    pytest.param({**REQUEST, "hostname": "Gpu_1"}, "hostname: 'Gpu_1' is not a DNS label",
                 id="bad-hostname"),
    pytest.param({**REQUEST, "hostname": "gpu-1\n"}, "hostname: the value is not a DNS label",
                 id="trailing-newline-not-echoed"),
    pytest.param({**REQUEST, "location": "FIN 01"}, "location: 'FIN 01' is not a Verda name",
                 id="bad-location"),
    pytest.param({**REQUEST, "node_group": 7}, "node_group: expected a string, got int", id="not-a-string"),
])
def test_bad_requests_name_the_field(body, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(StartupScriptError) as e:
        ss.parse_request(raw)
    assert str(e.value).startswith(message), str(e.value)


# ---------------------------------------------------------------- after use


def use(sid: str, first_seen: float = 0.0, name: str | None = None) -> ss.ScriptUse:
    return ss.ScriptUse(sid, name or f"autoscaler-startup-script-g-{sid}", first_seen)


@pytest.mark.parametrize("scripts, instances, now, expected", [
    pytest.param([use("a")], [("a", "provisioning")], 10_000, [], id="instance-still-provisioning"),
    pytest.param([use("a")], [("a", "ordered")], 10_000, [], id="instance-ordered"),
    pytest.param([use("a")], [("a", "running")], 1, ["a"], id="instance-running"),
    pytest.param([use("a")], [("a", "offline")], 1, ["a"], id="instance-offline"),
    pytest.param([use("a")], [("a", "error")], 1, ["a"], id="instance-failed"),
    pytest.param([use("a")], [("a", "no_capacity")], 1, ["a"], id="instance-no-capacity"),
    pytest.param([use("a")], [("a", "deleting")], 1, ["a"], id="instance-deleting"),
    pytest.param([use("a")], [("a", "some_new_status")], 10_000, [], id="undocumented-status-keeps-it"),
    pytest.param([use("a")], [], 599, [], id="unreferenced-within-grace"),
    pytest.param([use("a")], [], 600, ["a"], id="unreferenced-after-grace"),
    pytest.param([use("a", name="my-own-script")], [("a", "running")], 10_000, [], id="foreign-name-untouched"),
    pytest.param([use("a", 5), use("b", 1)], [("a", "running"), ("b", "running")], 10, ["b", "a"],
                 id="oldest-first"),
    pytest.param([use("a")], [("a", "provisioning"), ("a", "running")], 1, ["a"], id="one-user-got-it"),
    pytest.param([use("a")], [(None, "running"), ("b", "running")], 1, [], id="other-instances"),
])
def test_scripts_to_delete(scripts, instances, now, expected):
    assert [sid for sid, _ in ss.scripts_to_delete(scripts, instances, now, grace=600)] == expected


def test_reasons_say_why():
    ((_, handed),) = ss.scripts_to_delete([use("a")], [("a", "running")], 0)
    ((_, orphan),) = ss.scripts_to_delete([use("a")], [], 700, grace=600)
    assert handed == "its instance is running: the script was handed over"
    assert orphan == "no instance refers to it after 600s"


def test_never_deletes_a_script_an_instance_may_still_need():
    """Seeded: whatever the mix, a script whose only users are still being created is kept, and every
    deleted script is ours."""
    rng = random.Random(7)
    statuses = ["new", "ordered", "validating", "provisioning", "running", "offline", "error", "deleting", "weird"]
    for _ in range(500):
        scripts = [use(str(i), rng.uniform(0, 100), rng.choice([None, "manual"])) for i in range(rng.randint(0, 6))]
        instances = [(rng.choice([None, *[s.id for s in scripts]]), rng.choice(statuses))
                     for _ in range(rng.randint(0, 8))]
        doomed = {sid for sid, _ in ss.scripts_to_delete(scripts, instances, rng.uniform(0, 200), grace=50)}
        by_id = {s.id: s for s in scripts}
        for sid in doomed:
            assert by_id[sid].name.startswith(ss.SCRIPT_NAME_PREFIX)
            users = [st for i, st in instances if i == sid]
            assert not users or any(st in ("running", "offline", "error", "deleting") for st in users)
