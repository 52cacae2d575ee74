"""What the operator wrote into a Secret, as a digest in an annotation (pure).

Every Secret the operator writes carries the SHA-256 of its data: a later edit by anyone else (kubectl edit,
another tool) shows as a mismatch, while the operator's own writes always match, so its watch of Secrets
reacts to drift without reacting to itself. A one-way hash of the data, kept on the same Secret: it reveals
nothing that reading the Secret would not.
"""

from __future__ import annotations

import hashlib

from ..api import GROUP

DATA_DIGEST = f"{GROUP}/data-sha256"


def data_digest(data: dict[str, str] | None) -> str:
    """Over the base64 values as the API server stores and returns them (standard alphabet, padded)."""
    h = hashlib.sha256()
    for key in sorted(data or {}):
        h.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return h.hexdigest()


def stamped(secret: dict) -> dict:
    """The Secret with the digest of its data in its annotations."""
    meta = secret["metadata"]
    annotations = {**(meta.get("annotations") or {}), DATA_DIGEST: data_digest(secret.get("data"))}
    return {**secret, "metadata": {**meta, "annotations": annotations}}


def changed_by_others(secret: dict) -> bool:
    """Its data is not what the operator last wrote (or it carries no digest: written before digests existed)."""
    recorded = ((secret.get("metadata") or {}).get("annotations") or {}).get(DATA_DIGEST)
    return recorded != data_digest(secret.get("data"))
