"""The agent's configuration: a YAML file, then environment variables, then flags (each later
source wins), validated once at start with one-line messages (``ConfigError``).

Every setting: its YAML key, its environment variable (``DYNAMO_SNAPSHOT_`` + upper snake case,
plus ``NODE_NAME`` and ``POD_NAMESPACE`` from the downward API), and its flag (``--`` + kebab case):
nodeName (required), namespace, runtimeEndpoint (default the containerd socket), hostProc,
cgroupRoot, storageRoot, method (``auto|cri|criu``), criuPath, criuConfigFile, cudaCheckpoint
(path of NVIDIA's ``cuda-checkpoint``; empty = no GPU step), workers, criTimeoutSeconds,
checkpointTimeoutSeconds, leaseDurationSeconds (30), leaseRenewSeconds (10),
fsync, shutdownGraceSeconds. ``ENV_NAMES`` below is the exact list of environment variables.

The file is named by ``--config`` or ``DYNAMO_SNAPSHOT_CONFIG``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, cast

import yaml

from dynamo_snapshot.agent.executor import METHODS, ExecutorConfig, Method

CONFIG_ENV: Final = "DYNAMO_SNAPSHOT_CONFIG"


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line a person can act on."""


@dataclass(frozen=True)
class AgentConfig:
    node_name: str = ""
    namespace: str = "dynamo-snapshot-system"
    runtime_endpoint: str = "unix:///run/containerd/containerd.sock"
    host_proc: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    storage_root: str = "/var/lib/dynamo-snapshot/checkpoints"
    method: str = "auto"
    criu_path: str = "criu"
    criu_config_file: str = ""
    cuda_checkpoint: str = ""
    workers: int = 4
    cri_timeout_seconds: float = 10.0
    checkpoint_timeout_seconds: float = 600.0
    lease_duration_seconds: float = 30.0
    lease_renew_seconds: float = 10.0
    fsync: bool = True
    shutdown_grace_seconds: float = 60.0

    @functools.cached_property
    def executor(self) -> ExecutorConfig:
        env = {"CRIU_CONFIG_FILE": self.criu_config_file} if self.criu_config_file else {}
        return ExecutorConfig(
            storage_root=Path(self.storage_root),
            method=cast(Method, self.method),
            criu_path=self.criu_path,
            criu_env=env,
            cuda_checkpoint=self.cuda_checkpoint or None,
            host_proc=Path(self.host_proc),
            cgroup_root=Path(self.cgroup_root),
            checkpoint_timeout_s=self.checkpoint_timeout_seconds,
            fsync=self.fsync,
        )


# YAML key -> (field, environment variable or "")
_KEYS: Final = {
    "nodeName": ("node_name", "NODE_NAME"),
    "namespace": ("namespace", "POD_NAMESPACE"),
    "runtimeEndpoint": ("runtime_endpoint", "DYNAMO_SNAPSHOT_RUNTIME_ENDPOINT"),
    "hostProc": ("host_proc", "DYNAMO_SNAPSHOT_HOST_PROC"),
    "cgroupRoot": ("cgroup_root", "DYNAMO_SNAPSHOT_CGROUP_ROOT"),
    "storageRoot": ("storage_root", "DYNAMO_SNAPSHOT_STORAGE_ROOT"),
    "method": ("method", "DYNAMO_SNAPSHOT_METHOD"),
    "criuPath": ("criu_path", "DYNAMO_SNAPSHOT_CRIU_PATH"),
    "criuConfigFile": ("criu_config_file", "DYNAMO_SNAPSHOT_CRIU_CONFIG_FILE"),
    "cudaCheckpoint": ("cuda_checkpoint", "DYNAMO_SNAPSHOT_CUDA_CHECKPOINT"),
    "workers": ("workers", "DYNAMO_SNAPSHOT_WORKERS"),
    "criTimeoutSeconds": ("cri_timeout_seconds", ""),
    "checkpointTimeoutSeconds": (
        "checkpoint_timeout_seconds",
        "DYNAMO_SNAPSHOT_CHECKPOINT_TIMEOUT_SECONDS",
    ),
    "leaseDurationSeconds": ("lease_duration_seconds", ""),
    "leaseRenewSeconds": ("lease_renew_seconds", ""),
    "fsync": ("fsync", "DYNAMO_SNAPSHOT_FSYNC"),
    "shutdownGraceSeconds": ("shutdown_grace_seconds", ""),
}
FIELD_TO_KEY: Final = {f: k for k, (f, _e) in _KEYS.items()}
ENV_NAMES: Final = {f: e for _k, (f, e) in _KEYS.items() if e}
_TYPES: Final = {f.name: f.type for f in fields(AgentConfig)}


def _coerce(field: str, value: Any, source: str) -> Any:
    kind = _TYPES[field]
    where = f"{FIELD_TO_KEY[field]} ({source})"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind == "int":
        try:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if kind == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return str(value)


def load(
    *,
    file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Merge file, environment and flag values (``overrides``, by field name; None = unset)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = file or env.get(CONFIG_ENV)
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"config file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            line = str(err).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML: {line}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        for key, value in data.items():
            if key not in _KEYS:
                known = ", ".join(sorted(_KEYS))
                raise ConfigError(f"config file {path}: unknown setting {key!r} (known: {known})")
            field = _KEYS[key][0]
            values[field] = _coerce(field, value, f"config file {path}")
    for field, name in ENV_NAMES.items():
        if env.get(name):
            values[field] = _coerce(field, env[name], f"environment {name}")
    for field, value in (overrides or {}).items():
        if value is not None:
            values[field] = _coerce(field, value, "flag")
    cfg = AgentConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg: AgentConfig) -> None:
    if not cfg.node_name:
        raise ConfigError("nodeName is required (set NODE_NAME from the downward API)")
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    for field in ("storage_root", "host_proc", "cgroup_root"):
        value = getattr(cfg, field)
        if not value.startswith("/"):
            raise ConfigError(f"{FIELD_TO_KEY[field]} must be an absolute path, got {value!r}")
    if not (cfg.runtime_endpoint.startswith("unix://") or cfg.runtime_endpoint.startswith("/")):
        raise ConfigError(
            f"runtimeEndpoint must be unix:///path or /path, got {cfg.runtime_endpoint!r}"
        )
    if cfg.workers < 1:
        raise ConfigError(f"workers must be at least 1, got {cfg.workers}")
    for field in (
        "cri_timeout_seconds",
        "checkpoint_timeout_seconds",
        "lease_duration_seconds",
        "lease_renew_seconds",
        "shutdown_grace_seconds",
    ):
        if getattr(cfg, field) <= 0:
            raise ConfigError(f"{FIELD_TO_KEY[field]} must be positive, got {getattr(cfg, field)}")
    if cfg.lease_renew_seconds >= cfg.lease_duration_seconds:
        raise ConfigError(
            f"leaseRenewSeconds ({cfg.lease_renew_seconds:g}) must be shorter than "
            f"leaseDurationSeconds ({cfg.lease_duration_seconds:g})"
        )
