"""Payload codec cost: AES-256-GCM encode + decode per payload by size, with and without zlib; the size overhead.

    .venv/bin/python bench/codec.py [--seconds 1.0]

Host only (no cluster, no vault: keys from a Secret-like directory). Prints a table, writes bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from temporalio.api.common.v1 import Payload

from report import report
from temporal_mtls_codec import EncryptionCodec, SecretKeyProvider

SIZES = {"100B": 100, "10KiB": 10 * 1024, "1MiB": 1024 * 1024}


def payload(size: int) -> Payload:
    text = (b'"' + b"Hello World! " * (size // 13 + 1))[:size - 1] + b'"'  # compressible, like JSON
    return Payload(metadata={"encoding": b"json/plain"}, data=text)


async def round_trips(codec: EncryptionCodec, item: Payload, seconds: float) -> tuple[float, int]:
    """Mean microseconds per encode+decode of one payload; the encoded size."""
    [encoded] = await codec.encode([item])
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        [encoded] = await codec.encode([item])
        [decoded] = await codec.decode([encoded])
        count += 1
    assert decoded == item
    return (time.perf_counter() - started) / count * 1e6, encoded.ByteSize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    result: dict = {}
    with tempfile.TemporaryDirectory() as keys:
        (Path(keys) / "k1.key").write_bytes(os.urandom(32))
        (Path(keys) / "active").write_text("k1")
        provider = SecretKeyProvider(keys)
        for label, size in SIZES.items():
            item = payload(size)
            for compress in (False, True):
                micros, encoded = asyncio.run(round_trips(EncryptionCodec(provider, compress=compress), item,
                                                          args.seconds))
                name = f"{label}{'_zlib' if compress else ''}"
                result[f"{name}_roundtrip_us"] = round(micros, 1)
                result[f"{name}_bytes_stored_per_plain_byte"] = round(encoded / item.ByteSize(), 3)
    report("codec", result)


if __name__ == "__main__":
    main()
