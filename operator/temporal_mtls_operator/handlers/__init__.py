"""Thin kopf handlers: parse -> build -> apply -> status. Importing this module registers them."""

from . import authorization, client, cluster, deleted, namespace, secrets  # noqa: F401
