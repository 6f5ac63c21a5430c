"""ClusterSpec.from_resource: defaults, validation, isolation from the body."""

from __future__ import annotations

import pytest

from dask_operator.core.spec import ClusterSpec, scale_only
from dask_operator.errors import InvalidSpec


def cluster(spec=None, **metadata) -> dict:
    body = {"metadata": {"name": "dask", "namespace": "ns", "uid": "u-1", "generation": 3, **metadata}}
    if spec is not None:
        body["spec"] = spec
    return body


@pytest.mark.parametrize(
    "body, expected",
    [
        pytest.param(
            cluster(),
            ClusterSpec("dask", "ns", "u-1", 3, 1, {}, {}, {}),
            id="no-spec-defaults",
        ),
        pytest.param(
            cluster({"workers": {"replicas": 0}}),
            ClusterSpec("dask", "ns", "u-1", 3, 0, {}, {}, {}),
            id="zero-replicas",
        ),
        pytest.param(
            cluster({"workers": {"replicas": None}}),
            ClusterSpec("dask", "ns", "u-1", 3, 1, {}, {}, {}),
            id="null-replicas-default",
        ),
        pytest.param(
            cluster(
                {
                    "scheduler": {"template": {"spec": {"containers": [{"name": "s"}]}}, "service": {"type": "NodePort"}},
                    "workers": {"replicas": 5, "template": {"metadata": {"labels": {"a": "b"}}}},
                }
            ),
            ClusterSpec(
                "dask", "ns", "u-1", 3, 5,
                {"spec": {"containers": [{"name": "s"}]}},
                {"type": "NodePort"},
                {"metadata": {"labels": {"a": "b"}}},
            ),
            id="all-fields",
        ),
        pytest.param(
            {"metadata": {"name": "dask"}},
            ClusterSpec("dask", "default", "", 0, 1, {}, {}, {}),
            id="bare-metadata-defaults",
        ),
        pytest.param(
            cluster({"scheduler": None, "workers": None}),
            ClusterSpec("dask", "ns", "u-1", 3, 1, {}, {}, {}),
            id="null-sections",
        ),
    ],
)
def test_from_resource(body, expected):
    assert ClusterSpec.from_resource(body) == expected


@pytest.mark.parametrize(
    "body, message",
    [
        pytest.param({"metadata": {}}, "metadata.name", id="missing-name"),
        pytest.param({}, "metadata.name", id="missing-metadata"),
        pytest.param(cluster({"workers": {"replicas": -1}}), ">= 0", id="negative"),
        pytest.param(cluster({"workers": {"replicas": True}}), "non-negative integer", id="bool"),
        pytest.param(cluster({"workers": {"replicas": "2"}}), "non-negative integer", id="string"),
        pytest.param(cluster({"workers": {"replicas": 1.5}}), "non-negative integer", id="float"),
        pytest.param(cluster({"workers": []}), "spec.workers must be an object", id="workers-list"),
        pytest.param(
            cluster({"workers": {"template": "x"}}), "spec.workers.template must be an object", id="template-string"
        ),
        pytest.param(
            cluster({"scheduler": {"service": [1]}}), "spec.scheduler.service must be an object", id="service-list"
        ),
    ],
)
def test_from_resource_rejects(body, message):
    with pytest.raises(InvalidSpec, match=message):
        ClusterSpec.from_resource(body)


def test_templates_are_deep_copies():
    body = cluster({"workers": {"template": {"spec": {"containers": [{"name": "w"}]}}}})
    spec = ClusterSpec.from_resource(body)
    body["spec"]["workers"]["template"]["spec"]["containers"][0]["name"] = "changed"
    assert spec.worker_template["spec"]["containers"][0]["name"] == "w"


def test_spec_is_frozen_and_hashable():
    spec = ClusterSpec.from_resource(cluster())
    with pytest.raises(AttributeError):
        spec.replicas = 2  # type: ignore[misc]
    assert hash(spec) == hash(ClusterSpec.from_resource(cluster()))


@pytest.mark.parametrize("diff,expected", [
    pytest.param([("change", ("workers", "replicas"), 1, 2)], True, id="a-scale"),
    pytest.param((("change", ["workers", "replicas"], 0, 5),), True, id="path-as-list"),
    pytest.param([], False, id="no-diff-resume"),
    pytest.param(None, False, id="none"),
    pytest.param([("add", (), None, {"workers": {"replicas": 1}})], False, id="create-whole-spec"),
    pytest.param([("change", ("workers", "replicas"), 1, 2),
                  ("change", ("scheduler", "template", "spec"), {}, {"x": 1})], False, id="scale-and-scheduler"),
    pytest.param([("change", ("workers", "template"), {}, {"metadata": {}})], False, id="worker-template"),
    pytest.param([("remove", ("workers",), {"replicas": 1}, None)], False, id="workers-removed"),
])
def test_scale_only(diff, expected):
    assert scale_only(diff) is expected
