"""spec.encryption of a TemporalClusterClient: keep the app's payload keys Secret (called by the client handler).

A Key Vault that cannot wrap a new data key leaves the Secret as it is (the apps keep their keys) and
says so in the EncryptionReady condition.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from .. import payload_keys
from ..builders.encryption import payload_keys_secret
from ..keyvault.client import default_credential
from ..kube import KubeError, OwnershipConflict
from ..models.encryption import Encryption, PayloadKeyVault
from ..sources.self_signed import secret_data
from ..status import Condition


def keys_secret_name(body: dict, encryption: Encryption) -> str:
    return encryption.secret_name or f"{body['metadata']['name']}-payload-keys"


def rotation_requested(body: dict) -> str | None:
    value = ((body["metadata"].get("annotations")) or {}).get(payload_keys.ROTATE_ANNOTATION)
    handled = (((body.get("status") or {}).get("encryption") or {}).get("rotation") or {}).get("handled")
    return value if value and value != handled else None


def reconcile_keys(kube, body: dict, encryption: Encryption, owner: dict, cluster_name: str,
                   credential=None) -> tuple[Condition, dict]:
    """(EncryptionReady condition, status.encryption)."""
    namespace = body["metadata"]["namespace"]
    name = keys_secret_name(body, encryption)
    previous = (body.get("status") or {}).get("encryption") or {}
    rotate = rotation_requested(body)
    vault = encryption.azure_key_vault
    try:
        vault_ca = _vault_ca(kube, namespace, vault) if vault else None
        current = secret_data(kube.get("v1", "Secret", namespace, name))
        keys = payload_keys.next_keys(current, encryption, bool(rotate),
                                      wrap=_wrapper(vault, vault_ca, credential) if vault else None,
                                      vault_ca=vault_ca)
        kube.apply(payload_keys_secret(name, namespace, owner, cluster_name, keys.data))
    except OwnershipConflict as error:
        return Condition("EncryptionReady", False, "SecretConflict", str(error)), previous
    except _VaultConfigError as error:
        return Condition("EncryptionReady", False, "VaultTLSConfigInvalid", str(error)), previous
    except KubeError as error:
        return Condition("EncryptionReady", False, "ApplyFailed", str(error)), previous
    except Exception as error:  # the Azure SDK and credential chains raise many types; none may escape
        return Condition("EncryptionReady", False, "KeyVaultUnavailable",
                         f"cannot wrap a new data key with Key Vault key {vault.key_name if vault else '?'}: "
                         f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"), previous
    status = {"secretName": name, "source": encryption.source, "activeKeyId": keys.active, "keyIds": keys.key_ids}
    if vault:
        status["keyVaultKey"] = vault.key_name
    if rotate:
        status["rotation"] = {"handled": rotate}
    elif previous.get("rotation"):
        status["rotation"] = previous["rotation"]
    message = f"key {keys.active} encrypts; {len(keys.key_ids)} key(s) decrypt (Secret {name})"
    return Condition("EncryptionReady", True, "KeysReady", message), status


class _VaultConfigError(Exception):
    pass


def _vault_ca(kube, namespace: str, vault: PayloadKeyVault) -> bytes | None:
    if not vault.tls_ca_secret:
        return None
    pem = secret_data(kube.get("v1", "Secret", namespace, vault.tls_ca_secret)).get("ca.crt")
    if not pem:
        raise _VaultConfigError(f"Secret {vault.tls_ca_secret} (encryption.azureKeyVault.tlsCASecret) is missing "
                                "or has no ca.crt")
    return pem


def _wrapper(vault: PayloadKeyVault, vault_ca: bytes | None, credential):
    from temporal_mtls_codec.keyvault import VaultOptions, wrap_new_data_key
    ca_path = None
    if vault_ca:
        path = Path(tempfile.gettempdir()) / "temporal-mtls-operator" / \
            f"vault-ca-{hashlib.sha256(vault_ca).hexdigest()[:16]}.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(vault_ca)
        ca_path = str(path)
    options = VaultOptions(vault.api_version, vault.verify_challenge_resource, ca_path, vault.client_id)
    return lambda material: wrap_new_data_key(vault.vault_url, vault.key_name, material,
                                              credential or default_credential(vault.client_id), options)
