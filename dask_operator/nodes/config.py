"""The provider's configuration from the environment, as seed 002 reads it (VERDA_* accepted too).

- The cluster config (``{"node_configs": {...}}``): exactly one of
  ``DATACRUNCH_CLUSTER_CONFIG_JSON`` (JSON), ``DATACRUNCH_CLUSTER_CONFIG``
  (base64 of the JSON) or ``DATACRUNCH_CLUSTER_CONFIG_FILE`` (a path), or their
  ``VERDA_*`` names.
- Credentials: ``DATACRUNCH_CLIENT_ID`` and ``DATACRUNCH_CLIENT_SECRET`` (or
  ``VERDA_CLIENT_ID`` / ``VERDA_CLIENT_SECRET``).

Every problem raises `NodeGroupConfigError` naming the variable or the field;
a secret's value never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path

from ..errors import NodeGroupConfigError

PREFIXES = ("DATACRUNCH", "VERDA")
SOURCES = ("CLUSTER_CONFIG_JSON", "CLUSTER_CONFIG", "CLUSTER_CONFIG_FILE")


def _names(suffix: str) -> list[str]:
    return [f"{prefix}_{suffix}" for prefix in PREFIXES]


def cluster_config(env: Mapping[str, str]) -> dict:
    """The cluster config document, from whichever one variable holds it."""
    given = [name for suffix in SOURCES for name in _names(suffix) if env.get(name)]
    if len(given) != 1:
        every = " or ".join(n for s in SOURCES for n in _names(s))
        problem = f"set exactly one of {every}" + (f"; set: {', '.join(given)}" if given else "")
        raise NodeGroupConfigError("cluster config", problem)
    name = given[0]
    text = env[name]
    if name.endswith("_FILE"):
        try:
            text = Path(text).read_text()
        except OSError as e:
            raise NodeGroupConfigError(name, f"cannot read {text}: {e.strerror}") from None
    elif not name.endswith("_JSON"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise NodeGroupConfigError(name, f"not base64 of UTF-8 JSON: {e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise NodeGroupConfigError(name, f"not valid JSON: {e}") from None


def optional(env: Mapping[str, str], suffix: str) -> str | None:
    """The value of ``DATACRUNCH_<suffix>`` or ``VERDA_<suffix>``, None when neither is set."""
    names = _names(suffix)
    values = {env[n] for n in names if env.get(n)}
    if len(values) > 1:
        raise NodeGroupConfigError(" and ".join(names), "both set, to different values; set one")
    return values.pop() if values else None


def _one(env: Mapping[str, str], suffix: str) -> str:
    value = optional(env, suffix)
    if value is None:
        raise NodeGroupConfigError(" or ".join(_names(suffix)), "not set")
    return value


def credentials(env: Mapping[str, str]) -> tuple[str, str]:
    """(client id, client secret) of Verda's REST API credentials."""
    return _one(env, "CLIENT_ID"), _one(env, "CLIENT_SECRET")
