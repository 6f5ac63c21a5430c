"""The provider's configuration: environment variables (seed 002's and VERDA_*), flags, errors naming the field."""

from __future__ import annotations

import argparse
import base64
import json

import pytest

from dask_operator.errors import NodeGroupConfigError
from dask_operator.nodes import cli, config

DOC = {"node_configs": {"gpu": {"image_type": "ubuntu-24.04", "instance_option": "prefer_spot"}}}
TEXT = json.dumps(DOC)
CREDS = {"DATACRUNCH_CLIENT_ID": "id-1", "DATACRUNCH_CLIENT_SECRET": "s3cr3t-value"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("variable, value", [
    pytest.param("DATACRUNCH_CLUSTER_CONFIG_JSON", TEXT, id="json"),
    pytest.param("DATACRUNCH_CLUSTER_CONFIG", b64(TEXT), id="base64"),
    pytest.param("DATACRUNCH_CLUSTER_CONFIG_FILE", "{file}", id="file"),
    pytest.param("VERDA_CLUSTER_CONFIG_JSON", TEXT, id="verda-json"),
    pytest.param("VERDA_CLUSTER_CONFIG", b64(TEXT), id="verda-base64"),
    pytest.param("VERDA_CLUSTER_CONFIG_FILE", "{file}", id="verda-file"),
])
def test_cluster_config_sources(tmp_path, variable, value):
    path = tmp_path / "config.json"
    path.write_text(TEXT)
    assert config.cluster_config({variable: value.replace("{file}", str(path))}) == DOC


@pytest.mark.parametrize("env, field, problem", [
    pytest.param({}, "cluster config", "set exactly one of DATACRUNCH_CLUSTER_CONFIG_JSON", id="none"),
    pytest.param({"DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT, "DATACRUNCH_CLUSTER_CONFIG_FILE": "/x"}, "cluster config",
                 "set: DATACRUNCH_CLUSTER_CONFIG_JSON, DATACRUNCH_CLUSTER_CONFIG_FILE", id="two"),
    pytest.param({"DATACRUNCH_CLUSTER_CONFIG_JSON": "{nope"}, "DATACRUNCH_CLUSTER_CONFIG_JSON", "not valid JSON",
                 id="bad-json"),
    pytest.param({"VERDA_CLUSTER_CONFIG": "%%%"}, "VERDA_CLUSTER_CONFIG", "not base64", id="bad-base64"),
    pytest.param({"DATACRUNCH_CLUSTER_CONFIG": b64("{nope")}, "DATACRUNCH_CLUSTER_CONFIG", "not valid JSON",
                 id="base64-of-bad-json"),
    pytest.param({"DATACRUNCH_CLUSTER_CONFIG_FILE": "/no/such/file.json"}, "DATACRUNCH_CLUSTER_CONFIG_FILE",
                 "cannot read /no/such/file.json", id="missing-file"),
])
def test_bad_cluster_config_names_the_variable(env, field, problem):
    with pytest.raises(NodeGroupConfigError) as e:
        config.cluster_config(env)
    assert e.value.field == field and problem in str(e.value)


@pytest.mark.parametrize("env, expected", [
    pytest.param(CREDS, ("id-1", "s3cr3t-value"), id="datacrunch"),
    pytest.param({"VERDA_CLIENT_ID": "id-2", "VERDA_CLIENT_SECRET": "x"}, ("id-2", "x"), id="verda"),
    pytest.param({**CREDS, "VERDA_CLIENT_ID": "id-1"}, ("id-1", "s3cr3t-value"), id="both-names-same-value"),
])
def test_credentials(env, expected):
    assert config.credentials(env) == expected


@pytest.mark.parametrize("env, field", [
    pytest.param({}, "DATACRUNCH_CLIENT_ID or VERDA_CLIENT_ID", id="no-id"),
    pytest.param({"DATACRUNCH_CLIENT_ID": "id"}, "DATACRUNCH_CLIENT_SECRET or VERDA_CLIENT_SECRET", id="no-secret"),
    pytest.param({**CREDS, "VERDA_CLIENT_SECRET": "other-s3cr3t"}, "DATACRUNCH_CLIENT_SECRET and VERDA_CLIENT_SECRET",
                 id="two-secrets"),
])
def test_bad_credentials_name_the_variable_not_the_value(env, field):
    with pytest.raises(NodeGroupConfigError) as e:
        config.credentials(env)
    assert e.value.field == field
    assert "s3cr3t" not in str(e.value)


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(["serve", *argv])


def test_flags_and_environment_build_the_provider(tmp_path):
    env = {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT}
    provider, tls = cli.build(args("--nodes", "0:2:1A100.22V:FIN-01:gpu", "--api-url", "http://127.0.0.1:1/v1"),
                              env)
    assert list(provider.groups) == ["gpu"] and tls is None
    assert provider.cloud.api_url == "http://127.0.0.1:1/v1"


@pytest.mark.parametrize("argv, env, field", [
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01:cpu"], {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT},
                 "node_configs.cpu", id="group-without-config"),
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01"], {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT},
                 "--nodes=0:2:1A100.22V:FIN-01", id="bad-spec"),
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01:gpu"], {"DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT},
                 "DATACRUNCH_CLIENT_ID or VERDA_CLIENT_ID", id="no-credentials"),
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01:gpu", "--cert", "/c.pem"],
                 {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT}, "--key, --ca", id="tls-half-given"),
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01:gpu", "--cert", "/c", "--key", "/k", "--ca", "/a"],
                 {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": TEXT}, "--cert=/c, --key=/k, --ca=/a",
                 id="tls-files-missing"),
    pytest.param(["--nodes", "0:2:1A100.22V:FIN-01:gpu"],
                 {**CREDS, "DATACRUNCH_CLUSTER_CONFIG_JSON": json.dumps(
                     {"node_configs": {"gpu": {"image_type": "u", "instance_option": "cheapest"}}})},
                 "node_configs.gpu.instance_option", id="bad-instance-option"),
])
def test_bad_configuration_names_the_field(argv, env, field):
    with pytest.raises(NodeGroupConfigError) as e:
        cli.build(args(*argv), env)
    assert e.value.field == field


def test_main_fails_at_start_with_the_field(monkeypatch, capsys):
    for name in ("DATACRUNCH_CLUSTER_CONFIG_JSON", "DATACRUNCH_CLUSTER_CONFIG", "DATACRUNCH_CLUSTER_CONFIG_FILE",
                 "VERDA_CLUSTER_CONFIG_JSON", "VERDA_CLUSTER_CONFIG", "VERDA_CLUSTER_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATACRUNCH_CLUSTER_CONFIG_JSON", json.dumps({"node_configs": {"gpu": {"image_type": ""}}}))
    assert cli.main(args("--nodes", "0:2:1A100.22V:FIN-01:gpu")) == 2
    assert capsys.readouterr().err == "error: node_configs.gpu.image_type: must be a non-empty string, got ''\n"
