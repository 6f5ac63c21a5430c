"""Stand-ins for the HTTP API's unit tests: a backend, the reviews, a schema check.

FakeBackend, rules:
- clusters are stored by (namespace, name) with a `ClusterStatus` each
  (`ready` workers, `head_ready`, `max_replicas`); `get` raises
  ClusterNotFound; `list` takes `k=v` selectors only (records them);
- `scale` validates replicas as the real backends do, records the write,
  sets `spec.workers.replicas` (and `spec.workers.template` for a shape);
- the head is a pod dict per cluster; `restart_head` records the write and
  replaces it by a pod created at `next_head_created`, not Ready;
- `fail[verb] = error` makes that verb raise.

FakeReviews: `tokens` maps a token to its TokenReview status (unknown: not
authenticated); `scale_admins` are the usernames a SubjectAccessReview allows;
every review is counted in `calls`.

`check_response` validates a body against the OpenAPI document (a small
JSON Schema subset: $ref, type, const, enum, required, properties,
additionalProperties, items, minimum), and with `jsonschema` too when it is
installed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from dask_operator.backends.base import ClusterStatus
from dask_operator.core.scaling import shape_pod_template, validate_replicas
from dask_operator.errors import ClusterNotFound, HeadNotFound, InvalidScale, NotSupported

OWNER_LABEL = "dominodatalab.com/starting-user-id"
T0 = "2025-09-02T15:00:00Z"


def pod(name: str, created: str = T0, ready: bool = True) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", "uid": name,
                                                            "creationTimestamp": created},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class FakeBackend:
    def __init__(self, name: str = "dask-operator", plural: str = "daskclusters",
                 api_version: str = "dask.charmtx.com/v1alpha1", resource: str = "clusters") -> None:
        self.name, self.plural, self.api_version, self.resource = name, plural, api_version, resource
        self.objects: dict[tuple[str, str], dict] = {}
        self.statuses: dict[tuple[str, str], dict] = {}
        self.heads: dict[tuple[str, str], dict | None] = {}
        self.writes: list[tuple] = []
        self.selectors: list[str | None] = []
        self.fail: dict[str, BaseException] = {}
        self.next_head_created = "2025-09-02T16:00:00Z"
        self.maximum: int | None = None  # a ceiling scale enforces, as KubeRay's maxReplicas

    def add(self, namespace: str, name: str, owner: str | None = None, replicas: int = 1, ready: int = 1,
            max_replicas: int | None = None, head: dict | None | str = "default") -> dict:
        labels = {OWNER_LABEL: owner} if owner else {}
        obj = {"apiVersion": self.api_version, "kind": "Cluster",
               "metadata": {"name": name, "namespace": namespace, "labels": labels, "resourceVersion": "1"},
               "spec": {"workers": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "w"}]}}}},
               "status": {}}
        self.objects[(namespace, name)] = obj
        self.statuses[(namespace, name)] = {"ready_workers": ready, "head_ready": True, "max_replicas": max_replicas}
        self.heads[(namespace, name)] = pod(f"{name}-head") if head == "default" else head
        return obj

    def _check(self, verb: str) -> None:
        if verb in self.fail:
            raise self.fail[verb]

    async def get(self, namespace: str, name: str) -> dict:
        self._check("get")
        if (namespace, name) not in self.objects:
            raise ClusterNotFound(f"Cluster {namespace}/{name} does not exist")
        return copy.deepcopy(self.objects[(namespace, name)])

    async def list(self, namespace: str | None, label_selector: str | None = None) -> list[dict]:
        self._check("list")
        self.selectors.append(label_selector)
        want = dict(term.split("=", 1) for term in label_selector.split(",")) if label_selector else {}
        return [copy.deepcopy(o) for (ns, _), o in sorted(self.objects.items())
                if namespace in (None, ns) and all(o["metadata"]["labels"].get(k) == v for k, v in want.items())]

    async def status(self, obj: dict) -> ClusterStatus:
        self._check("status")
        meta = obj["metadata"]
        st = self.statuses[(meta["namespace"], meta["name"])]
        return ClusterStatus(desired=obj["spec"]["workers"]["replicas"], ready_workers=st["ready_workers"],
                             head_ready=st["head_ready"], max_replicas=st["max_replicas"])

    async def scale(self, namespace: str, name: str, replicas: int, *, shape=None, group=None) -> dict:
        self._check("scale")
        if group not in (None, "workers"):
            raise InvalidScale(f"unknown worker group {group!r}")
        validate_replicas(replicas, maximum=self.maximum)
        obj = self.objects[(namespace, name)]
        self.writes.append(("scale", namespace, name, replicas, shape))
        obj["spec"]["workers"]["replicas"] = replicas
        if shape is not None:
            obj["spec"]["workers"]["template"] = shape_pod_template(obj["spec"]["workers"]["template"], shape)
        return copy.deepcopy(obj)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        self._check("head_pod")
        return copy.deepcopy(self.heads.get((namespace, name)))

    async def restart_head(self, namespace: str, name: str) -> dict:
        self._check("restart_head")
        await self.get(namespace, name)
        old = self.heads.get((namespace, name))
        if old is None:
            raise HeadNotFound(f"Cluster {namespace}/{name} has no scheduler pod to restart")
        self.writes.append(("restart_head", namespace, name))
        self.heads[(namespace, name)] = pod(f"{name}-head-2", self.next_head_created, ready=False)
        return old

    async def shape_head(self, namespace: str, name: str, shape) -> tuple[dict, bool]:
        raise NotSupported(f"the {self.name} backend cannot change the scheduler's hardware tier")


class ShapingBackend(FakeBackend):
    """A backend that can change the head's tier: a shape the head has already restarts nothing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_shapes: dict[tuple[str, str], object] = {}

    async def shape_head(self, namespace: str, name: str, shape) -> tuple[dict, bool]:
        await self.get(namespace, name)
        if self.head_shapes.get((namespace, name)) == shape:
            return copy.deepcopy(self.objects[(namespace, name)]), False
        self.writes.append(("shape_head", namespace, name, shape))
        self.head_shapes[(namespace, name)] = shape
        return copy.deepcopy(self.objects[(namespace, name)]), True


def review(username: str, uid: str = "", groups: tuple[str, ...] = (), audiences: tuple[str, ...] = ()) -> dict:
    return {"authenticated": True, "audiences": list(audiences),
            "user": {"username": username, "uid": uid, "groups": ["system:authenticated", *groups]}}


class FakeReviews:
    def __init__(self, tokens: Mapping[str, Mapping] | None = None, scale_admins: set[str] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.scale_admins = set(scale_admins or ())
        self.calls: list[tuple] = []
        self.fail: BaseException | None = None

    async def token_review(self, token: str, audiences=()) -> Mapping:
        self.calls.append(("token", tuple(audiences)))
        if self.fail:
            raise self.fail
        return self.tokens.get(token, {"authenticated": False, "error": "invalid bearer token"})

    async def access_review(self, user, groups, uid, extra, attributes) -> bool:
        self.calls.append(("access", user, dict(attributes)))
        if self.fail:
            raise self.fail
        return user in self.scale_admins


# ---------------------------------------------------------------------- schema


def _resolve(doc: Mapping, node: Mapping) -> Mapping:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number"):
        ok = isinstance(value, int) if kind == "integer" else isinstance(value, (int, float))
        return ok and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def validate(doc: Mapping, value: Any, schema: Mapping, where: str = "$") -> None:
    schema = _resolve(doc, schema)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        assert any(_is(value, k) for k in kinds), f"{where}: {value!r} is not {kinds}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "minimum" in schema and _is(value, "number"):
        assert value >= schema["minimum"], f"{where}: {value} < {schema['minimum']}"
    if isinstance(value, dict):
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                validate(doc, item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                raise AssertionError(f"{where}: unexpected property {key!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(doc, item, schema["items"], f"{where}[{i}]")


def operation_for(doc: Mapping, method: str, path: str) -> tuple[str, Mapping]:
    """(template, operation) of the documented route serving `path`."""
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return template, ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def check_response(doc: Mapping, method: str, path: str, status: int, body: Any) -> None:
    template, op = operation_for(doc, method, path)
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {template}: status {status} is not documented"
    schema = _resolve(doc, response)["content"]["application/json"]["schema"]
    validate(doc, body, schema)
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)
