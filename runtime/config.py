"""HubConfig: every setting of a task hub, from keyword arguments or a ``durable.yaml`` file.

Every error names the setting it is about (``http.port: expected an integer, got 'x'``),
so a typo in a YAML file is found at start, not when the first request arrives.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import HubConfigError
from .registry import ACTIVITY_OPTIONS
from .store.factory import SCHEMES
from .store.payloads import DEFAULT_INLINE_LIMIT

PLACEMENTS = ("dedicated", "pooled")
DURABILITIES = ("fsync", "process")
#: Bounds of ``payload_inline_limit``: below 1 KiB most events would go out of line; above
#: 1 GiB no row can hold the payload (SQLite's limit).
PAYLOAD_INLINE_LIMITS = (1024, 2**30)
#: Store URL schemes ``runtime.store.open_store`` opens, with the form of their URLs.
STORE_SCHEMES = SCHEMES
#: The file ``Runtime.start(config=...)`` and the ``durable`` CLI read by convention.
DEFAULT_CONFIG_FILE = "durable.yaml"
#: Settings whose value is a mapping; keyword overrides merge into them key by key.
SECTIONS = ("http", "ray", "activity_defaults", "tracing")
#: Where ``tracing.exporter`` sends spans (``none``: tracing off).
TRACE_EXPORTERS = ("none", "console", "jsonl", "otlp")
#: Keys of ``activity_defaults.retry`` (seconds for intervals, as in YAML).
RETRY_KEYS = (
    "first_retry_interval",
    "max_number_of_attempts",
    "backoff_coefficient",
    "max_retry_interval",
    "retry_timeout",
)


# -- validation helpers: each returns the (normalised) value or raises naming the key -------


def _expected(key: str, what: str, value: Any) -> HubConfigError:
    return HubConfigError(f"{key}: expected {what}, got {value!r}")


def _int(key: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _expected(key, "an integer", value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _expected(key, f"an integer {bounds}", value)
    return value


def _number(key: str, value: Any, low: float = 0.0, *, positive: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _expected(key, "a number", value)
    if (positive and value <= 0) or value < low:
        raise _expected(key, "a positive number" if positive else f"a number >= {low:g}", value)
    return float(value) if isinstance(value, float) else value


def _seconds(key: str, value: Any, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        what = "a positive number of seconds" + (" or null" if optional else "")
        raise _expected(key, what, value)
    return float(value)


def _str(key: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _expected(key, "a non-empty string" + (" or null" if optional else ""), value)
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expected(key, "true or false", value)
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _expected(key, "one of " + ", ".join(choices), value)
    return value


def _mapping(key: str, value: Any, known: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A plain dict copy of ``value``; unknown keys (when ``known`` is given) are errors."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _expected(key, "a mapping", value)
    for name in value:
        if not isinstance(name, str):
            raise _expected(key, "a mapping with string keys", value)
    if known is not None:
        unknown = sorted(set(value) - set(known))
        if unknown:
            where = ", ".join(f"{key}.{u}" if key else u for u in unknown)
            raise HubConfigError(f"{where}: unknown setting; known: {', '.join(sorted(known))}")
    return dict(value)


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# -- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpConfig:
    """Settings of the management HTTP API that ``durable serve`` starts."""

    host: str = "127.0.0.1"
    port: int = 8000
    token_env: str | None = None
    max_body_bytes: int = 1_048_576
    #: the web dashboard at /dashboard/, beside the API (behind the same token)
    dashboard: bool = True

    def __post_init__(self) -> None:
        _str("http.host", self.host)
        _int("http.port", self.port, 0, 65535)
        _str("http.token_env", self.token_env, optional=True)
        _int("http.max_body_bytes", self.max_body_bytes, 1)
        _flag("http.dashboard", self.dashboard)

    @classmethod
    def of(cls, value: Any) -> HttpConfig:
        """From an HttpConfig, a mapping or None (defaults)."""
        if isinstance(value, cls):
            return value
        return cls(**_mapping("http", value, _field_names(cls)))


@dataclass(frozen=True)
class RayConfig:
    """Where the driver finds Ray: ``address`` for ``ray.init`` and the driver's namespace."""

    address: str | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        _str("ray.address", self.address, optional=True)
        _str("ray.namespace", self.namespace, optional=True)

    @classmethod
    def of(cls, value: Any) -> RayConfig:
        """From a RayConfig, a mapping or None (defaults)."""
        if isinstance(value, cls):
            return value
        return cls(**_mapping("ray", value, _field_names(cls)))


#: What each exporter imports (the ``otel`` extra); a JSON-lines file needs nothing.
_NEEDS = {
    "console": ("opentelemetry.sdk",),
    "otlp": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry traces of orchestrations.

    ``exporter``: ``otlp`` (OTLP over HTTP to ``endpoint``, e.g.
    ``http://127.0.0.1:4318/v1/traces``) and ``console`` (each process's standard output)
    need ``pip install 'ray-durable[otel]'``; ``jsonl`` (a span a line, in the fields of
    OpenTelemetry's SDK, appended to ``path`` by every process of one machine) needs
    nothing more; ``none`` turns tracing off.
    """

    exporter: str = "none"
    endpoint: str | None = None
    path: str | None = None
    service_name: str = "ray-durable"

    def __post_init__(self) -> None:
        _choice("tracing.exporter", self.exporter, TRACE_EXPORTERS)
        _str("tracing.endpoint", self.endpoint, optional=True)
        _str("tracing.path", self.path, optional=True)
        _str("tracing.service_name", self.service_name)
        if self.exporter == "otlp" and self.endpoint is None:
            raise HubConfigError("tracing.endpoint: required by the otlp exporter")
        if self.exporter == "jsonl":
            if self.path is None:
                raise HubConfigError("tracing.path: required by the jsonl exporter")
            # Every process appends to one file: the same one whatever its working directory.
            object.__setattr__(self, "path", os.path.abspath(self.path))
        for module in _NEEDS.get(self.exporter, ()):
            if not _installed(module):
                raise HubConfigError(
                    f"tracing.exporter: {self.exporter!r} needs {module}; "
                    "install it with pip install 'ray-durable[otel]'"
                )

    @property
    def enabled(self) -> bool:
        """True when spans are exported."""
        return self.exporter != "none"

    @classmethod
    def of(cls, value: Any) -> TracingConfig:
        """From a TracingConfig, a mapping or None (tracing off)."""
        if isinstance(value, cls):
            return value
        return cls(**_mapping("tracing", value, _field_names(cls)))


def _retry(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    retry = _mapping("activity_defaults.retry", value, RETRY_KEYS)
    for required in ("first_retry_interval", "max_number_of_attempts"):
        if required not in retry:
            raise HubConfigError(f"activity_defaults.retry.{required}: required")
    key = "activity_defaults.retry."
    retry["first_retry_interval"] = _seconds(
        key + "first_retry_interval", retry["first_retry_interval"], optional=False
    )
    _int(key + "max_number_of_attempts", retry["max_number_of_attempts"], 1)
    if "backoff_coefficient" in retry:
        retry["backoff_coefficient"] = float(
            _number(key + "backoff_coefficient", retry["backoff_coefficient"], 1.0)
        )
    for name in ("max_retry_interval", "retry_timeout"):
        if name in retry:
            retry[name] = _seconds(key + name, retry[name])
    return retry


def _activity_defaults(value: Any) -> dict[str, Any]:
    known = (*sorted(ACTIVITY_OPTIONS), "retry")
    options = _mapping("activity_defaults", value, known)
    key = "activity_defaults."
    for name, option in options.items():
        if name in ("num_cpus", "num_gpus"):
            _number(key + name, option)
        elif name == "memory":
            _int(key + name, option, 0)
        elif name == "max_retries":
            _int(key + name, option, -1)
        elif name == "resources":
            resources = _mapping(key + name, option)
            for resource, amount in resources.items():
                _number(f"{key}resources.{resource}", amount)
            options[name] = resources
        elif name == "retry_exceptions":
            if not isinstance(option, (bool, list)):
                raise _expected(key + name, "true, false or a list", option)
        elif name == "runtime_env":
            options[name] = _mapping(key + name, option)
        elif name in ("scheduling_strategy", "accelerator_type"):
            _str(key + name, option)
        elif name == "retry":
            options[name] = _retry(option)
    return options


def _store_url(value: Any, hub: str, base: str | os.PathLike[str] | None = None) -> str:
    """The store URL, with a relative SQLite path made absolute (hosts run elsewhere)."""
    if value is None:
        return f"sqlite:///{os.path.join(os.getcwd(), '.durable', f'{hub}.db')}"
    if not isinstance(value, str) or "://" not in value:
        raise _expected("store", "a URL such as sqlite:///path/to/file.db", value)
    scheme = value.split("://", 1)[0]
    if scheme not in STORE_SCHEMES:
        # Refused here, in the driver: the supervisor would die opening it, with Ray's error.
        supported = ", ".join(f"{s}:// ({STORE_SCHEMES[s]})" for s in STORE_SCHEMES)
        raise HubConfigError(
            f"store: unsupported scheme {scheme!r} in {value!r}; supported: {supported}"
        )
    if value.startswith("sqlite:"):
        path = value[len("sqlite:///") :] if value.startswith("sqlite:///") else ""
        if not path:
            raise _expected("store", "a URL such as sqlite:///path/to/file.db", value)
        if not os.path.isabs(path):
            value = f"sqlite:///{os.path.abspath(os.path.join(base or os.getcwd(), path))}"
    return value


# -- the hub's configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class HubConfig:
    """Settings of one task hub; the supervisor and every host get a copy.

    Build it from keywords (``HubConfig(hub="orders", placement="pooled")``), a mapping
    (``from_dict``), a YAML file (``from_yaml``) or all of them (``load``). Nested
    sections accept mappings and are kept as frozen dataclasses, so ``to_dict`` and
    ``HubConfig(**config.to_dict())`` round-trip.
    """

    hub: str = "default"
    store: str | None = None
    placement: str = "dedicated"
    pool_size: int = 4
    passivate_after: float | None = None
    durability: str = "fsync"
    warm_hosts: int = 1
    #: bytes: a larger payload (input, result, event data, output) is stored once, out of
    #: line, and history rows keep a 36-byte reference
    payload_inline_limit: int = DEFAULT_INLINE_LIMIT
    #: host deaths while one instance's step or one entity operation ran, after which that
    #: work is quarantined (the instance fails, the operation is dead-lettered)
    quarantine_after: int = 5
    http: HttpConfig = field(default_factory=HttpConfig)
    activity_defaults: dict[str, Any] = field(default_factory=dict)
    ray: RayConfig = field(default_factory=RayConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.hub, str) or not self.hub or "/" in self.hub:
            raise _expected("hub", "a non-empty name without '/'", self.hub)
        _choice("placement", self.placement, PLACEMENTS)
        _choice("durability", self.durability, DURABILITIES)
        _int("pool_size", self.pool_size, 1)
        _int("warm_hosts", self.warm_hosts, 0)
        _int("payload_inline_limit", self.payload_inline_limit, *PAYLOAD_INLINE_LIMITS)
        _int("quarantine_after", self.quarantine_after, 1)
        # Frozen: normalised values go in through object.__setattr__.
        normalised = {
            "store": _store_url(self.store, self.hub),
            "passivate_after": _seconds("passivate_after", self.passivate_after),
            "http": HttpConfig.of(self.http),
            "ray": RayConfig.of(self.ray),
            "tracing": TracingConfig.of(self.tracing),
            "activity_defaults": _activity_defaults(self.activity_defaults),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HubConfig:
        """Build from a mapping; an unknown key is an error that names it."""
        return cls(**_mapping("", values, _field_names(cls)))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> HubConfig:
        """Load a YAML file; keywords override its values (sections merge key by key)."""
        return cls.from_dict(merge_settings(read_yaml(path), overrides))

    @classmethod
    def load(
        cls,
        source: HubConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> HubConfig:
        """A config from a file path, a mapping, a HubConfig or nothing, plus overrides."""
        if source is None:
            values: dict[str, Any] = {}
        elif isinstance(source, HubConfig):
            values = source.to_dict()
        elif isinstance(source, Mapping):
            values = dict(source)
        elif isinstance(source, (str, os.PathLike)):
            values = read_yaml(source)
        else:
            raise _expected("config", "a file path, a mapping or a HubConfig", source)
        return cls.from_dict(merge_settings(values, overrides))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain mappings (what the supervisor receives)."""
        return asdict(self)

    def activity_options(self) -> dict[str, Any]:
        """The Ray options of ``activity_defaults`` (without ``retry``)."""
        return {k: v for k, v in self.activity_defaults.items() if k != "retry"}

    def activity_retry_policy(self) -> Any:
        """``activity_defaults.retry`` as a RetryPolicy, or None when not set."""
        from datetime import timedelta

        from .orchestration import RetryPolicy

        retry = self.activity_defaults.get("retry")
        if not retry:
            return None

        def span(name: str) -> timedelta | None:
            value = retry.get(name)
            return None if value is None else timedelta(seconds=value)

        return RetryPolicy(
            first_retry_interval=timedelta(seconds=retry["first_retry_interval"]),
            max_number_of_attempts=retry["max_number_of_attempts"],
            backoff_coefficient=retry.get("backoff_coefficient", 1.0),
            max_retry_interval=span("max_retry_interval"),
            retry_timeout=span("retry_timeout"),
        )


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a YAML file, with a relative SQLite store resolved beside the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HubConfigError(f"config file {str(file)!r} not found") from None
    except OSError as exc:
        raise HubConfigError(f"config file {str(file)!r} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise HubConfigError(
            f"config file {str(file)!r} is not valid YAML{where}: {problem}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise HubConfigError(
            f"config file {str(file)!r}: expected a mapping of settings, got {type(data).__name__}"
        )
    values = _mapping("", data, _field_names(HubConfig))
    if isinstance(values.get("store"), str):
        values["store"] = _store_url(
            values["store"], str(values.get("hub", "default")), file.resolve().parent
        )
    return values


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; mapping sections merge key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        old = merged.get(key)
        if isinstance(old, (HttpConfig, RayConfig, TracingConfig)):
            old = asdict(old)
        if key in SECTIONS and isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged
