"""Temporal's static configuration, rendered from jinja2 templates."""

from .config import CONFIG_DIR, DATA_DIR, METRICS_PORT, SERVICES, TLS_DIRS, render_config, render_dynamic_config

__all__ = ["CONFIG_DIR", "DATA_DIR", "METRICS_PORT", "SERVICES", "TLS_DIRS", "render_config", "render_dynamic_config"]
