"""Configuration: a JSON or TOML file (or flags turned into the same document) -> frozen Config.

    load_config(path) -> LoadedConfig(config, warnings)
    config_from_dict(raw, base_dir=..., environ=..., hostname=...) -> LoadedConfig
    ConfigError(problems): every Problem(path, message) found, none of them echoing a value

Modules: files (read and parse), expand (${VAR}), schema_check (a valid document, without jsonschema),
schema_errors (schema -> messages, by jsonschema), problem_summary (many problems of one kind said
once), credentials (config, file, environment; re-read for rotation), naming (default consumer), build
(rules across fields), model (the dataclasses).
"""

from shardbeat.config.build import config_from_dict, load_config
from shardbeat.config.credentials import read_credentials_file, reload_credentials
from shardbeat.config.files import parse_config_file
from shardbeat.config.model import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    Config,
    ConfigError,
    ControlConfig,
    GroupConfig,
    GroupIdentity,
    LoadedConfig,
    MetricsConfig,
    OutputConfig,
    OutputFormat,
    Problem,
    ProviderName,
)
from shardbeat.config.naming import default_consumer

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "Config",
    "ConfigError",
    "ControlConfig",
    "GroupConfig",
    "GroupIdentity",
    "LoadedConfig",
    "MetricsConfig",
    "OutputConfig",
    "OutputFormat",
    "Problem",
    "ProviderName",
    "config_from_dict",
    "default_consumer",
    "load_config",
    "parse_config_file",
    "read_credentials_file",
    "reload_credentials",
]
