"""`dask-operator api`'s flags and wiring, the error table, and the OpenAPI document's coverage."""

from __future__ import annotations

import argparse

import pytest
from api_fakes import FakeBackend
from api_world import World

from dask_operator import errors
from dask_operator.api import main, openapi
from dask_operator.api.app import ERRORS, ROUTES
from dask_operator.errors import BackendUnavailable
from dask_operator.backends.registry import Registry
from dask_operator.errors import InvalidKind


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    main.add_arguments(p)
    return p.parse_args(argv)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPUTE_NAMESPACE", raising=False)
    args = parse()
    assert (args.port, args.namespace, args.owner_label, args.admin_group, args.backend, args.max_replicas) == (
        8080, "domino-compute", "dominodatalab.com/starting-user-id", [], [], None)


def test_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTE_NAMESPACE", "compute")
    args = parse("--port", "9000", "--admin-group", "a", "--admin-group", "b", "--backend",
                 "daskclusters=dco-dask", "--tiers-configmap", "ops/tiers", "--keys-secret", "keys",
                 "--max-replicas", "8", "--audience", "scaler")
    assert args.namespace == "compute" and args.admin_group == ["a", "b"] and args.max_replicas == 8
    assert args.backend == [("daskclusters", "dco-dask")] and args.audience == ["scaler"]
    assert main._where(args.tiers_configmap, "own") == ("ops", "tiers")
    assert main._where(args.keys_secret, "own") == ("own", "keys")
    assert main._where(None, "own") == (None, None)


@pytest.mark.parametrize("argv", [["--backend", "pods=x"], ["--backend", "daskclusters"],
                                  ["--max-replicas", "-1"]])
def test_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


# ------------------------------------------------------------------ kinds

FACTORIES = {"dask-operator": lambda kube: FakeBackend(),
             "kuberay": lambda kube: FakeBackend("kuberay", "rayclusters", "ray.io/v1", "rayclusters")}
DEFAULTS = {"daskclusters": "dask-operator", "rayclusters": "kuberay", "sparkclusters": "dco-spark"}


def test_kinds_report_missing_default_backends() -> None:
    kinds = Registry.build(None, {}, FACTORIES, DEFAULTS)
    assert sorted(kinds.backends) == ["daskclusters", "rayclusters"]
    with pytest.raises(BackendUnavailable, match="'dco-spark'"):
        kinds.backend("sparkclusters")
    with pytest.raises(InvalidKind, match=r"^kind must be one of \[rayclusters, daskclusters, sparkclusters\]$"):
        kinds.backend("pods")


@pytest.mark.parametrize("choices", [{"sparkclusters": "spark-operator"}, {"pods": "kuberay"},
                                     {"rayclusters": "dask-operator"}],
                         ids=["chosen-backend-missing", "unknown-kind", "backend-for-another-kind"])
def test_kinds_refuse_bad_choices(choices: dict) -> None:
    with pytest.raises(ValueError):
        Registry.build(None, choices, FACTORIES, DEFAULTS)


def test_kinds_with_the_real_registry_serve_our_cluster() -> None:
    kinds = Registry.build(object())
    assert kinds.backend("daskclusters").name == "dask-operator"


# ------------------------------------------------------------------ error table


def test_error_table_agrees_with_the_scaling_errors() -> None:
    for cls, (status, code) in ERRORS.items():
        if issubclass(cls, errors.ScalingError):
            assert (cls.http_status, cls.code) == (status, code), cls.__name__


# ------------------------------------------------------------------ OpenAPI coverage


def test_every_route_is_documented_and_every_documented_route_served() -> None:
    doc = openapi.document()
    served = {(path, method.lower()) for method, path, _ in ROUTES}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented


def test_every_route_of_the_seeds_is_served() -> None:
    served = {(method, path) for method, path, _ in ROUTES}
    assert {
        ("GET", "/ddl_cluster_scaler_api/list/{kind}"), ("GET", "/ddl_cluster_scaler/list/{kind}"),
        ("GET", "/cluster/{kind}/{name}"), ("GET", "/ddl_cluster_scaler/cluster/{kind}/{name}"),
        ("POST", "/cluster/scale/{kind}/{name}"), ("PATCH", "/ddl_cluster_scaler/scale/{kind}/{name}"),
        ("PATCH", "/ddl_cluster_scaler/restart_head/{kind}/{name}"),
        ("GET", "/ddl_cluster_scaler/restart_head_status/{kind}/{name}"),
        ("PATCH", "/ddl_cluster_scaler/head-hw-tier/{kind}/{name}"), ("GET", "/healthz"),
    } <= served


def test_document_refs_resolve() -> None:
    doc = openapi.document()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                target = doc
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(doc)


def test_world_app_builds() -> None:
    assert World().app() is not None


@pytest.mark.parametrize("path, status, body", [
    pytest.param("/healthz", 200, {"status": "up"}, id="wrong-const"),
    pytest.param("/cluster/daskclusters/x", 403, {"error": "unauthorized"}, id="missing-message"),
    pytest.param("/cluster/daskclusters/x", 403, {"error": "e", "message": "m", "token": "t"}, id="extra-field"),
    pytest.param("/cluster/daskclusters/x", 418, {"error": "e", "message": "m"}, id="undocumented-status"),
    pytest.param("/nowhere", 200, {}, id="undocumented-route"),
])
def test_the_schema_check_is_not_vacuous(path: str, status: int, body: dict) -> None:
    from api_fakes import check_response

    with pytest.raises(AssertionError):
        check_response(openapi.document(), "GET", path, status, body)
