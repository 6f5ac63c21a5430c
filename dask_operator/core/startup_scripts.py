"""Startup scripts for Verda instances: one per instance, rendered from a template.

Pure rules, no I/O and no clock (``now`` comes in as an argument):

- **Template.** Seed 002's Go ``text/template`` substitutions, ``{{ .NAME }}``
  (spaces inside the braces optional), and nothing else: any other ``{{ ... }}``
  is refused when the template is parsed, so a template that would not render
  never reaches a request. `Template.names` are the variables it uses; every one
  must be given at start (`check_variables`), so rendering cannot fail later.
- **Variables.** Per instance, from the provider's request (`ScriptRequest`):
  ``SCRIPT_NAME``, ``HOSTNAME``, ``NODE_GROUP``, ``INSTANCE_TYPE``, ``LOCATION``
  and ``PROVIDER_ID_PREFIX`` (``datacrunch://``; the script sets the kubelet's
  provider ID to it plus the instance id). Fixed ones come from the command
  line, secret ones from Kubernetes Secrets at each request; a name may be
  given once, and not the name of a per-instance variable.
- **Request.** A JSON object with ``script_name`` (seed 002's prefix
  ``autoscaler-startup-script-``, then a DNS label's characters), ``hostname``,
  ``node_group`` (DNS labels), ``instance_type`` and ``location`` (Verda's
  names: letters, digits, ``.``, ``_``, ``-``). Every field is required; an
  unknown field is refused. A problem raises `StartupScriptError` naming the
  field; a value is quoted only when it is short and of allowed characters.
- **After use.** A script the server uploaded goes once its instance has been
  handed it: the instance referring to it (``startup_script_id``) has left
  Verda's creating states, or has failed (a status Verda has not documented
  counts as neither). A script no instance refers to goes
  once it has been seen for ``grace`` seconds (the create that would have used
  it failed, or the instance is gone). `scripts_to_delete` decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dask_operator.core.k8s_names import DNS_LABEL_RE, DNS_SUBDOMAIN_RE
from dask_operator.core.nodegroups import CREATING, PROVIDER_ID_PREFIX, SCRIPT_NAME_PREFIX, UNSPECIFIED, instance_state
from dask_operator.errors import StartupScriptError

PER_INSTANCE = ("SCRIPT_NAME", "HOSTNAME", "NODE_GROUP", "INSTANCE_TYPE", "LOCATION", "PROVIDER_ID_PREFIX")
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024  # Verda's own limit on a script is lower; this only bounds memory
DEFAULT_GRACE_SECONDS = 600.0

_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_SUBSTITUTION = re.compile(r"^\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*$")
# JSON Schema (ECMA-262) patterns, also in the server's OpenAPI document; matched with `fullmatch`
assert re.fullmatch(r"[a-z-]+", SCRIPT_NAME_PREFIX)  # no character a pattern must escape
SCRIPT_NAME_PATTERN = rf"^{SCRIPT_NAME_PREFIX}[a-z0-9]([-a-z0-9]{{0,100}}[a-z0-9])?$"
VERDA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_SCRIPT_NAME = re.compile(SCRIPT_NAME_PATTERN)
_VERDA_NAME = re.compile(VERDA_NAME_PATTERN)
_SECRET_KEY = re.compile(r"^[-._A-Za-z0-9]{1,253}$")
REQUEST_FIELDS = ("script_name", "hostname", "node_group", "instance_type", "location")


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and variable names, alternating (text, name, text, ...)."""

    parts: tuple[str, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.parts[1::2])

    def render(self, variables: Mapping[str, str]) -> str:
        missing = sorted(self.names - set(variables))
        if missing:
            raise StartupScriptError("template", f"no value for {', '.join(missing)}")
        return "".join(part if i % 2 == 0 else variables[part] for i, part in enumerate(self.parts))


def parse_template(text: str) -> Template:
    """Parse ``{{ .NAME }}`` substitutions; any other action is an error naming its line."""
    if len(text.encode()) > MAX_TEMPLATE_BYTES:
        raise StartupScriptError("template", f"over {MAX_TEMPLATE_BYTES} bytes")
    parts: list[str] = []
    last = 0
    for match in _ACTION.finditer(text):
        found = _SUBSTITUTION.fullmatch(match.group(1))
        if found is None:
            line = text.count("\n", 0, match.start()) + 1
            raise StartupScriptError("template", f"line {line}: only {{{{ .NAME }}}} substitutions are supported, "
                                                 f"not {{{{{match.group(1)[:40]}}}}}")
        parts += [text[last:match.start()], found.group(1)]
        last = match.end()
    if "{{" in text[last:]:
        line = text.count("\n", 0, text.index("{{", last)) + 1
        raise StartupScriptError("template", f"line {line}: an unclosed {{{{")
    return Template(tuple(parts + [text[last:]]))


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` items (a flag given several times) to a dict; errors name the flag, never a value."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _VARIABLE_NAME.fullmatch(name):
            raise StartupScriptError(flag, f"expected NAME=VALUE with NAME a variable name, got {name[:40]!r}")
        if name in out:
            raise StartupScriptError(flag, f"{name} given twice")
        out[name] = value
    return out


def parse_secret_refs(items: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``NAME=SECRET/KEY`` items: the variable NAME is key KEY of Secret SECRET (in the server's namespace)."""
    refs = {}
    for name, ref in parse_assignments(items, "--secret").items():
        secret, sep, key = ref.partition("/")
        if not sep or not DNS_SUBDOMAIN_RE.fullmatch(secret) or not _SECRET_KEY.fullmatch(key):
            raise StartupScriptError("--secret", f"{name}: expected SECRET/KEY (a Secret's name and one of its keys)")
        refs[name] = (secret, key)
    return refs


def check_variables(template: Template, fixed: Mapping[str, str], secret: Mapping[str, object]) -> None:
    """Every name the template uses is given exactly once; none shadows a per-instance variable."""
    for source, names in (("--var", fixed), ("--secret", secret)):
        if clash := sorted(set(names) & set(PER_INSTANCE)):
            raise StartupScriptError(source, f"{', '.join(clash)} is set per instance; choose another name")
    if both := sorted(set(fixed) & set(secret)):
        raise StartupScriptError("--var and --secret", f"{', '.join(both)} given by both")
    if missing := sorted(template.names - set(fixed) - set(secret) - set(PER_INSTANCE)):
        raise StartupScriptError("template", f"uses {', '.join(missing)}, which no --var or --secret gives")


@dataclass(frozen=True)
class ScriptRequest:
    script_name: str
    hostname: str
    node_group: str
    instance_type: str
    location: str

    def variables(self) -> dict[str, str]:
        return {"SCRIPT_NAME": self.script_name, "HOSTNAME": self.hostname, "NODE_GROUP": self.node_group,
                "INSTANCE_TYPE": self.instance_type, "LOCATION": self.location,
                "PROVIDER_ID_PREFIX": PROVIDER_ID_PREFIX}

    def body(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in REQUEST_FIELDS}


def parse_request(raw: bytes) -> ScriptRequest:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StartupScriptError("body", f"not a UTF-8 JSON object: {type(e).__name__}") from None
    if not isinstance(body, dict):
        raise StartupScriptError("body", f"expected a JSON object, got {type(body).__name__}")
    if unknown := sorted(set(body) - set(REQUEST_FIELDS)):
        raise StartupScriptError(unknown[0][:60], "unknown field")
    values = {}
    for name, rule, what in (("script_name", _SCRIPT_NAME, "seed 002's script name (its prefix, then a DNS label)"),
                             ("hostname", DNS_LABEL_RE, "a DNS label"), ("node_group", DNS_LABEL_RE, "a DNS label"),
                             ("instance_type", _VERDA_NAME, "a Verda name"), ("location", _VERDA_NAME, "a Verda name")):
        value = body.get(name)
        if value is None:
            raise StartupScriptError(name, "required")
        if not isinstance(value, str):
            raise StartupScriptError(name, f"expected a string, got {type(value).__name__}")
        if not rule.fullmatch(value):
            shown = repr(value) if len(value) <= 80 and value.isprintable() else "the value"
            raise StartupScriptError(name, f"{shown} is not {what}")
        values[name] = value
    return ScriptRequest(**values)


@dataclass(frozen=True)
class ScriptUse:
    """A script on Verda and what the server knows of it."""

    id: str
    name: str
    first_seen: float  # when this server first saw it (uploaded it, or listed it after a restart)


def scripts_to_delete(scripts: Iterable[ScriptUse], instances: Iterable[tuple[str | None, str]], now: float,
                      grace: float = DEFAULT_GRACE_SECONDS) -> list[tuple[str, str]]:
    """(script id, reason) of our scripts that have been used or will never be.

    ``instances`` are (startup_script_id, Verda status) pairs. Scripts not named
    with seed 002's prefix are someone else's and are never touched.
    """
    users: dict[str, list[str]] = {}
    for script_id, status in instances:
        if script_id:
            users.setdefault(script_id, []).append(status)
    out = []
    for script in sorted(scripts, key=lambda s: (s.first_seen, s.id)):
        if not script.name.startswith(SCRIPT_NAME_PREFIX):
            continue
        statuses = users.get(script.id, [])
        handed = [s for s in statuses if instance_state(s) != (CREATING, None) and instance_state(s)[0] != UNSPECIFIED]
        if handed:
            out.append((script.id, f"its instance is {handed[0]}: the script was handed over"))
        elif not statuses and now - script.first_seen >= grace:
            out.append((script.id, f"no instance refers to it after {grace:g}s"))
    return out
