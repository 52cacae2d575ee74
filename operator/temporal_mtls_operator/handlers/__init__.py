"""Thin kopf handlers: parse -> build -> apply -> status. Importing this module registers them."""

from . import cluster, namespace  # noqa: F401
