"""Typed, validated settings loaded from ``conf/`` with hot reload through ``ConfigHolder``."""

from gateway.config.holder import ConfigHolder
from gateway.config.loader import Client, Config, config_path_from_env, load_config

__all__ = ["Client", "Config", "ConfigHolder", "config_path_from_env", "load_config"]
