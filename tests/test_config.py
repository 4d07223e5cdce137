"""HubConfig: durable.yaml, keyword overrides, validation that names the key, round trips."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import pytest
import ray

from runtime import HubConfig, HubConfigError, RetryPolicy, Runtime
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name
from runtime.config import HttpConfig, RayConfig, read_yaml

FULL = """\
hub: orders
store: sqlite:///data/orders.db
placement: pooled
pool_size: 3
passivate_after: 30
durability: process
warm_hosts: 0
http:
  host: 0.0.0.0
  port: 9090
  token_env: DURABLE_TOKEN
  max_body_bytes: 2048
activity_defaults:
  num_cpus: 0.5
  max_retries: 2
  resources: {disk: 1}
  retry:
    first_retry_interval: 5
    max_number_of_attempts: 3
    backoff_coefficient: 2
ray:
  address: auto
  namespace: shop
"""


def write(tmp_path: Path, text: str, name: str = "durable.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file_sets_every_key(tmp_path):
    config = HubConfig.from_yaml(write(tmp_path, FULL))
    assert config.hub == "orders"
    # A relative SQLite path is taken beside the YAML file, and made absolute for the hosts.
    assert config.store == f"sqlite:///{tmp_path / 'data' / 'orders.db'}"
    assert (config.placement, config.pool_size, config.warm_hosts) == ("pooled", 3, 0)
    assert config.passivate_after == 30.0
    assert config.durability == "process"
    assert config.http == HttpConfig("0.0.0.0", 9090, "DURABLE_TOKEN", 2048)
    assert config.ray == RayConfig("auto", "shop")
    assert config.activity_options() == {
        "num_cpus": 0.5,
        "max_retries": 2,
        "resources": {"disk": 1},
    }
    assert config.activity_retry_policy() == RetryPolicy(timedelta(seconds=5), 3, 2.0)


def test_empty_file_and_no_file_give_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = HubConfig.from_yaml(write(tmp_path, ""))
    assert empty == HubConfig()
    assert empty.hub == "default"
    assert empty.store == f"sqlite:///{tmp_path / '.durable' / 'default.db'}"
    assert empty.http == HttpConfig("127.0.0.1", 8000, None, 1_048_576)
    assert empty.passivate_after is None and empty.activity_retry_policy() is None
    assert HubConfig.load(None) == empty


def test_keywords_override_the_file_and_sections_merge(tmp_path):
    path = write(tmp_path, FULL)
    config = HubConfig.from_yaml(
        path, pool_size=8, passivate_after=None, http={"port": 9191}, ray={"namespace": "x"}
    )
    assert config.pool_size == 8 and config.passivate_after is None
    assert config.http == HttpConfig("0.0.0.0", 9191, "DURABLE_TOKEN", 2048)
    assert config.ray == RayConfig("auto", "x")
    assert HubConfig.load(str(path), hub="other").hub == "other"
    assert HubConfig.load(config, warm_hosts=2) == HubConfig.from_yaml(
        path,
        pool_size=8,
        passivate_after=None,
        http={"port": 9191},
        ray={"namespace": "x"},
        warm_hosts=2,
    )


def test_round_trip_through_dict_and_pickle(tmp_path):
    config = HubConfig.from_yaml(write(tmp_path, FULL))
    values = config.to_dict()
    assert values["http"]["port"] == 9090 and values["ray"]["namespace"] == "shop"
    assert HubConfig(**values) == config
    assert HubConfig.from_dict(values) == config
    assert pickle.loads(pickle.dumps(config)) == config
    # The config keeps its own copy: changing the caller's mapping changes nothing.
    defaults = {"num_cpus": 1}
    copy = HubConfig(activity_defaults=defaults)
    defaults["num_cpus"] = 4
    assert copy.activity_defaults == {"num_cpus": 1}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"hub": ""}, "hub: expected a non-empty name"),
        ({"hub": "a/b"}, "hub: expected a non-empty name without '/'"),
        ({"store": 5}, "store: expected a URL"),
        ({"store": "orders.db"}, "store: expected a URL"),
        ({"store": "sqlite://orders.db"}, "store: expected a URL"),
        ({"placement": "spread"}, "placement: expected one of dedicated, pooled, got 'spread'"),
        ({"pool_size": 0}, "pool_size: expected an integer at least 1, got 0"),
        ({"pool_size": "4"}, "pool_size: expected an integer, got '4'"),
        ({"pool_size": True}, "pool_size: expected an integer, got True"),
        ({"passivate_after": "soon"}, "passivate_after: expected a positive number"),
        ({"passivate_after": 0}, "passivate_after: expected a positive number"),
        ({"durability": "none"}, "durability: expected one of fsync, process, got 'none'"),
        ({"warm_hosts": -1}, "warm_hosts: expected an integer at least 0, got -1"),
        ({"http": "8000"}, "http: expected a mapping, got '8000'"),
        ({"http": {"port": "x"}}, "http.port: expected an integer, got 'x'"),
        ({"http": {"port": 70000}}, "http.port: expected an integer between 0 and 65535"),
        ({"http": {"host": ""}}, "http.host: expected a non-empty string"),
        ({"http": {"token_env": 1}}, "http.token_env: expected a non-empty string or null"),
        ({"http": {"max_body_bytes": 0}}, "http.max_body_bytes: expected an integer at least 1"),
        ({"http": {"dashboard": "yes"}}, "http.dashboard: expected true or false, got 'yes'"),
        ({"http": {"prot": 1}}, "http.prot: unknown setting; known: dashboard, host, max_body"),
        ({"ray": {"adress": "auto"}}, "ray.adress: unknown setting; known: address, namespace"),
        ({"ray": {"namespace": 3}}, "ray.namespace: expected a non-empty string or null"),
        ({"activity_defaults": []}, "activity_defaults: expected a mapping"),
        ({"activity_defaults": {"num_cpu": 1}}, "activity_defaults.num_cpu: unknown setting"),
        ({"activity_defaults": {"num_cpus": "1"}}, "activity_defaults.num_cpus: expected a number"),
        ({"activity_defaults": {"num_gpus": -1}}, "activity_defaults.num_gpus: expected a number"),
        ({"activity_defaults": {"max_retries": -2}}, "activity_defaults.max_retries: expected"),
        ({"activity_defaults": {"resources": {"disk": "a"}}}, "activity_defaults.resources.disk"),
        ({"activity_defaults": {"retry_exceptions": "yes"}}, "activity_defaults.retry_exceptions"),
        (
            {"activity_defaults": {"retry": {"max_number_of_attempts": 2}}},
            "activity_defaults.retry.first_retry_interval: required",
        ),
        (
            {
                "activity_defaults": {
                    "retry": {"first_retry_interval": 1, "max_number_of_attempts": 0}
                }
            },
            "activity_defaults.retry.max_number_of_attempts: expected an integer at least 1",
        ),
        (
            {
                "activity_defaults": {
                    "retry": {"first_retry_interval": 1, "max_number_of_attempts": 1, "backoff": 2}
                }
            },
            "activity_defaults.retry.backoff: unknown setting",
        ),
        (
            {
                "activity_defaults": {
                    "retry": {
                        "first_retry_interval": 1,
                        "max_number_of_attempts": 1,
                        "backoff_coefficient": 0.5,
                    }
                }
            },
            "activity_defaults.retry.backoff_coefficient: expected a number >= 1",
        ),
        (
            {
                "activity_defaults": {
                    "retry": {
                        "first_retry_interval": 1,
                        "max_number_of_attempts": 1,
                        "retry_timeout": "1h",
                    }
                }
            },
            "activity_defaults.retry.retry_timeout: expected a positive number of seconds or null",
        ),
        ({"pool_sise": 4}, "pool_sise: unknown setting; known: activity_defaults"),
    ],
)
def test_every_validation_error_names_the_key(settings, message):
    with pytest.raises(HubConfigError) as err:
        HubConfig.from_dict(settings)
    assert message in str(err.value)


def test_yaml_errors_name_the_file_and_the_key(tmp_path):
    with pytest.raises(HubConfigError, match="not found"):
        HubConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(HubConfigError, match=r"not valid YAML at line 2, column 8"):
        HubConfig.from_yaml(write(tmp_path, "hub: a\nport: 1: 2\n"))
    with pytest.raises(HubConfigError, match="expected a mapping of settings, got list"):
        HubConfig.from_yaml(write(tmp_path, "- hub\n"))
    with pytest.raises(HubConfigError, match="http.port: expected an integer, got 'x'"):
        HubConfig.from_yaml(write(tmp_path, "http:\n  port: x\n"))
    with pytest.raises(HubConfigError, match="^colour: unknown setting"):
        read_yaml(write(tmp_path, "colour: blue\n"))


def test_runtime_start_reads_the_file_and_round_trips_through_the_supervisor(
    tmp_path, hub_name, store_url
):
    path = write(
        tmp_path,
        "hub: ignored-by-keyword\nplacement: pooled\npool_size: 1\nwarm_hosts: 0\n"
        "passivate_after: 12.5\nhttp: {port: 9000}\n"
        "activity_defaults: {num_cpus: 1, retry: {first_retry_interval: 2, "
        "max_number_of_attempts: 4, max_retry_interval: 60}}\n",
    )
    rt = Runtime.start(hub_name, config=str(path), store=store_url, http={"host": "0.0.0.0"})
    try:
        expected = HubConfig.from_yaml(
            path, hub=hub_name, store=store_url, http={"host": "0.0.0.0"}
        )
        assert rt.config == expected
        # The supervisor was built from to_dict() and gives back the same settings.
        running = ray.get(rt.supervisor.hub_config.remote())
        assert HubConfig.from_dict(running) == expected
        assert running["http"] == {
            "host": "0.0.0.0",
            "port": 9000,
            "token_env": None,
            "max_body_bytes": 1_048_576,
            "dashboard": True,
        }
        assert HubConfig.from_dict(running).activity_retry_policy().max_number_of_attempts == 4
    finally:
        rt.shutdown()


def test_bad_settings_fail_before_anything_starts(hub_name, store_url):
    with pytest.raises(HubConfigError, match="http.port: expected an integer"):
        Runtime.start(hub_name, store=store_url, http={"port": "eighty"})
    with pytest.raises(HubConfigError, match="colour: unknown setting"):
        Runtime.start(hub_name, store=store_url, colour="blue")
    with pytest.raises(ValueError):
        ray.get_actor(supervisor_name(hub_name), namespace=NAMESPACE)


def test_payload_inline_limit_defaults_to_64_kib_and_comes_from_the_file(tmp_path):
    assert HubConfig().payload_inline_limit == 65536
    path = tmp_path / "durable.yaml"
    path.write_text("payload_inline_limit: 1048576\n")
    assert HubConfig.from_yaml(path).payload_inline_limit == 1048576


@pytest.mark.parametrize(
    "value, message",
    [
        (1023, "an integer between 1024 and 1073741824, got 1023"),
        (2**30 + 1, "an integer between 1024 and 1073741824, got 1073741825"),
        ("64k", "an integer, got '64k'"),
        (True, "an integer, got True"),
        (None, "an integer, got None"),
    ],
)
def test_a_bad_payload_inline_limit_is_a_config_error_naming_it(value, message):
    with pytest.raises(HubConfigError) as caught:
        HubConfig(payload_inline_limit=value)
    assert str(caught.value) == f"payload_inline_limit: expected {message}"
