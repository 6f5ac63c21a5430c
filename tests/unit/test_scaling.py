"""core.scaling: replicas validation and worker shapes, table-driven; the registry's configuration."""

from __future__ import annotations

import pytest

from dask_operator.backends import DEFAULTS, KINDS, Registry
from dask_operator.core.scaling import WorkerShape, replacing, shape_pod_template, template_patch, validate_replicas
from dask_operator.errors import InvalidKind, InvalidScale


@pytest.mark.parametrize(
    "value, minimum, maximum, message",
    [
        pytest.param(-1, 0, None, "replicas must be a non-negative integer", id="negative"),
        pytest.param(1.5, 0, None, "replicas must be a non-negative integer, got 1.5", id="float"),
        pytest.param("3", 0, None, "replicas must be a non-negative integer, got '3'", id="string"),
        pytest.param(True, 0, None, "replicas must be a non-negative integer, got True", id="bool"),
        pytest.param(None, 0, None, "replicas must be a non-negative integer, got None", id="null"),
        pytest.param(0, 1, None, "replicas must be at least 1 for this cluster, got 0", id="below-minimum"),
        pytest.param(11, 0, 10, "replicas must be at most 10 for this cluster, got 11", id="above-maximum"),
    ],
)
def test_invalid_replicas_are_refused_with_the_reason(value, minimum, maximum, message):
    with pytest.raises(InvalidScale) as raised:
        validate_replicas(value, minimum, maximum)
    assert str(raised.value) == message
    assert raised.value.http_status == 400 and raised.value.code == "bad_request"


@pytest.mark.parametrize("value, minimum, maximum", [
    pytest.param(0, 0, None, id="zero"), pytest.param(10, 0, 10, id="at-maximum"),
    pytest.param(1, 1, 1, id="at-minimum"),
])
def test_valid_replicas_pass_unchanged(value, minimum, maximum):
    assert validate_replicas(value, minimum, maximum) == value


TEMPLATE = {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "1"}}}, {"name": "side"}],
                     "nodeSelector": {"old": "x"}}}


@pytest.mark.parametrize(
    "shape, expected_spec",
    [
        pytest.param(WorkerShape(), TEMPLATE["spec"], id="empty-shape-changes-nothing"),
        pytest.param(
            WorkerShape(resources={"limits": {"nvidia.com/gpu": "1"}}),
            {**TEMPLATE["spec"], "containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                                                {"name": "side"}]},
            id="resources-replace-the-first-container's"),
        pytest.param(
            WorkerShape(node_selector={"gpu": "a100"}, tolerations=[{"key": "gpu", "operator": "Exists"}]),
            {**TEMPLATE["spec"], "nodeSelector": {"gpu": "a100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
            id="selector-and-tolerations"),
    ],
)
def test_shape_pod_template(shape, expected_spec):
    result = shape_pod_template(TEMPLATE, shape)
    assert result["spec"] == expected_spec
    assert result["metadata"] == TEMPLATE["metadata"]
    assert TEMPLATE["spec"]["nodeSelector"] == {"old": "x"}, "the input is not modified"


def test_shape_on_an_empty_template_makes_a_container():
    assert shape_pod_template(None, WorkerShape(resources={"requests": {"cpu": "1"}})) == {
        "spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}


def test_registry_refuses_unknown_backends_and_kinds():
    with pytest.raises(ValueError, match="unknown kinds or backends"):
        Registry.build(None, {"daskclusters": "nope"})
    with pytest.raises(ValueError, match="unknown kinds or backends"):
        Registry.build(None, {"mpiclusters": "dask-operator"})


def test_registry_answers_invalid_kind_with_the_seed_message():
    from dask_operator.backends.dask_cluster import DaskClusterBackend
    registry = Registry({"daskclusters": DaskClusterBackend(None)})
    with pytest.raises(InvalidKind) as raised:
        registry.backend("mpiclusters")
    assert str(raised.value) == "kind must be one of [rayclusters, daskclusters, sparkclusters]"
    assert set(DEFAULTS) == set(KINDS)


# ---------------------------------------------------------------- replacing


@pytest.mark.parametrize(
    "old, new, expected",
    [
        pytest.param(None, {"a": 1}, {"a": 1}, id="no-old"),
        pytest.param({"a": 1, "b": 2}, {"a": 3}, {"a": 3, "b": None}, id="dropped-key-nulled"),
        pytest.param({"r": {"x": 1, "y": 2}}, {"r": {"x": 5}}, {"r": {"x": 5, "y": None}}, id="nested"),
        pytest.param({"r": {"x": 1}}, {"r": "flat"}, {"r": "flat"}, id="map-replaced-by-scalar"),
        pytest.param({"l": [1, 2]}, {"l": [3]}, {"l": [3]}, id="lists-as-they-are"),
        pytest.param("junk", {"a": 1}, {"a": 1}, id="old-not-a-map"),
    ],
)
def test_replacing(old, new, expected):
    assert replacing(old, new) == expected


@pytest.mark.parametrize(
    "template, shape, expected",
    [
        pytest.param({"spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": 1}}}],
                               "nodeSelector": {"gpu": "a100", "zone": "x"}}},
                     WorkerShape(resources={"limits": {"cpu": "2"}}, node_selector={"zone": "y"}),
                     {"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "2"}}}],
                               "nodeSelector": {"gpu": None, "zone": "y"}}},
                     id="old-tier-keys-nulled"),
        pytest.param({"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "2"}}}]}},
                     WorkerShape(resources={"limits": {"cpu": "2"}}), None, id="already-shaped"),
        pytest.param(None, WorkerShape(), {"spec": {"containers": [{}]}}, id="empty-template-gets-a-container"),
    ],
)
def test_template_patch(template, shape, expected):
    """A merge patch that leaves nothing of the old tier behind, or None when nothing changes."""
    assert template_patch(template, shape) == expected
