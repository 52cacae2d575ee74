"""Connect with Temporal's environment configuration, and notice when mounted certificates change."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from temporal_mtls_codec.config import data_converter

log = logging.getLogger(__name__)
_TLS_FILES = ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH")


async def connect(retry_seconds: float = 60.0) -> Client:
    """TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_* (or TEMPORAL_CONFIG_FILE), as the CLI reads them;
    payloads encrypted when TEMPORAL_CODEC_DIR names the mounted payload-keys Secret.

    Retries for a while: at deploy time the frontend may still be starting or its Service routing.
    """
    deadline = asyncio.get_running_loop().time() + retry_seconds
    while True:
        try:
            return await Client.connect(**ClientConfig.load_client_connect_config(), data_converter=data_converter())
        except RuntimeError as error:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("Temporal not reachable yet (%s); retrying", str(error).splitlines()[0][:200])
            await asyncio.sleep(2)


def certificate_digest() -> str:
    """Digest of the TLS files the environment names (content only; never logged)."""
    digest = hashlib.sha256()
    for variable in _TLS_FILES:
        path = os.environ.get(variable)
        if path and Path(path).exists():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()


async def on_certificate_change(callback: Callable[[], Awaitable[None]], interval: float = 5.0) -> None:
    """Call ``callback`` whenever the mounted certificate files change (the kubelet swaps them atomically)."""
    current = certificate_digest()
    while True:
        await asyncio.sleep(interval)
        latest = certificate_digest()
        if latest != current:
            try:
                await callback()
                current = latest
                log.info("reconnected with renewed client certificate")
            except Exception as error:  # keep serving with the old connection; retry next round
                log.warning("reconnect after certificate change failed: %s", error)
