"""`python -m temporal_mtls_operator.keyvault`: the keyvault-certs command (see seed.py for what it does)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ServiceRequestError

from ..certs import KeyAlgorithm
from ..models.cluster import parse_duration
from .client import VaultSettings, open_clients
from .seed import RENEW_BEFORE, Outcome, SeedError, SeedPlan, seed

EMULATOR_API_VERSION = "7.6"  # Lowkey Vault refuses the SDK's newer default with HTTP 400
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VAULT_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
# How DefaultAzureCredential words "this credential is not set up here" (as opposed to "it tried and failed").
_UNCONFIGURED = re.compile(r"authentication unavailable|not found on path|not installed|could not be found|"
                           r"azure-identity-broker")

EPILOG = """\
Certificates (Key Vault names): PREFIXca, PREFIXinternode, PREFIXfrontend, PREFIXsystem-worker,
PREFIXoperator-client and PREFIXclient-NAME per --client. The CA is created once; its key is kept
in the vault (exportable) and read back to sign leaves. A leaf that is signed by that CA, has the
expected names and usages and does not expire within 30 days is kept; --rotate replaces them all.

Credentials: DefaultAzureCredential (AZURE_* environment, workload identity, managed identity, ...).
For the local Lowkey Vault emulator, set
  IDENTITY_ENDPOINT=http://127.0.0.1:<token port>/metadata/identity/oauth2/token IDENTITY_HEADER=local
and pass --tls-ca with the emulator's certificate (PEM). For localhost, 127.0.0.1 and *.localhost
vault hosts, --api-version defaults to 7.6 and challenge-resource verification is off."""


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{message} (see --help)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="keyvault-certs", description="Put a Temporal cluster's mTLS CA and certificates into "
               "Azure Key Vault.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vault-url", default="https://localhost:8443", help="default: %(default)s (the local emulator)")
    p.add_argument("--api-version", help="Key Vault API version (default: 7.6 for local emulator hosts, "
                   "else the SDK's default)")
    p.add_argument("--no-verify-challenge-resource", action="store_true",
                   help="accept an auth challenge whose resource is not the vault's host (automatic for local hosts)")
    p.add_argument("--tls-ca", metavar="FILE", help="PEM file that verifies the vault's TLS certificate")
    p.add_argument("--cluster", default="demo", help="TemporalCluster name (default: %(default)s)")
    p.add_argument("--namespace", default="default", help="its Kubernetes namespace (default: %(default)s)")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="an app's client certificate (CN=NAME, clientAuth); repeatable")
    p.add_argument("--prefix", default="temporal-", help="Key Vault name prefix (default: %(default)s)")
    p.add_argument("--rotate", action="store_true", help="import new versions of every leaf (same CA)")
    p.add_argument("--key-algorithm", default=KeyAlgorithm.ECDSA_P256.value,
                   choices=[a.value for a in KeyAlgorithm], help="for new keys (default: %(default)s)")
    p.add_argument("--certificate-duration", default="2160h", type=duration,
                   help="leaf lifetime, e.g. 2160h (default: %(default)s)")
    p.add_argument("--ca-duration", default="87600h", type=duration, help="CA lifetime (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print {name: {version, thumbprint, notAfter, action}}")
    return p


def duration(text: str):
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def is_local_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def settings_from(args: argparse.Namespace) -> VaultSettings:
    url = args.vault_url.rstrip("/")
    if urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
        raise UsageError(f"--vault-url must be an https:// URL, got {args.vault_url!r}")
    if args.tls_ca and not os.path.isfile(args.tls_ca):
        raise UsageError(f"--tls-ca: no such file: {args.tls_ca}")
    local = is_local_host(url)
    return VaultSettings(url, api_version=args.api_version or (EMULATOR_API_VERSION if local else None),
                         verify_challenge_resource=not (args.no_verify_challenge_resource or local),
                         ca_bundle_path=args.tls_ca)


def plan_from(args: argparse.Namespace) -> SeedPlan:
    for option, value in (("--cluster", args.cluster), ("--namespace", args.namespace)):
        if not _DNS_LABEL.match(value):
            raise UsageError(f"{option} must be a DNS label (lowercase letters, digits, '-'), got {value!r}")
    for name in args.client:
        if not _DNS_LABEL.match(name):
            raise UsageError(f"--client must be a DNS label (lowercase letters, digits, '-'), got {name!r}")
    if args.prefix and not _VAULT_NAME.match(args.prefix + "x"):
        raise UsageError(f"--prefix may hold only letters, digits and '-', got {args.prefix!r}")
    algorithm = KeyAlgorithm(args.key_algorithm)
    if algorithm is KeyAlgorithm.ECDSA_P384 and is_local_host(args.vault_url):
        raise UsageError("--key-algorithm ECDSA-P384 is refused by the Lowkey Vault emulator (HTTP 500 on import); "
                         "use ECDSA-P256 or RSA-2048")
    if args.certificate_duration <= RENEW_BEFORE:
        raise UsageError(f"--certificate-duration must be longer than the {RENEW_BEFORE.days}-day renewal window")
    if args.certificate_duration > args.ca_duration:
        raise UsageError("--certificate-duration must not exceed --ca-duration")
    return SeedPlan(cluster=args.cluster, namespace=args.namespace, clients=tuple(dict.fromkeys(args.client)),
                    prefix=args.prefix, algorithm=algorithm, ca_duration=args.ca_duration,
                    certificate_duration=args.certificate_duration, rotate=args.rotate)


def describe_error(error: Exception, args: argparse.Namespace | None) -> str:
    """One line, no traceback, never key material (SDK messages carry none)."""
    if isinstance(error, (SeedError, UsageError)):
        return str(error)
    if isinstance(error, ServiceRequestError):
        hint = " (pass --tls-ca with the vault's CA)" if "CERTIFICATE_VERIFY_FAILED" in str(error) else ""
        return f"cannot reach the vault at {args.vault_url}: {first_line(error)}{hint}"
    if isinstance(error, ClientAuthenticationError) and error.status_code is None:  # from the credential
        return f"authentication failed: {credential_failure(error)}"
    if isinstance(error, HttpResponseError):
        return http_failure(error, args)
    if isinstance(error, ValueError):  # the SDK's challenge check (an emulator outside *.vault.azure.net)
        return f"{first_line(error)} (or pass --no-verify-challenge-resource for an emulator)"
    return f"vault request failed: {type(error).__name__}: {first_line(error)}"


def http_failure(error: HttpResponseError, args: argparse.Namespace) -> str:
    kind = "authentication failed" if error.status_code in (401, 403) else "vault request failed"
    status = " ".join(str(part) for part in (error.status_code, error.reason) if part)
    message = service_message(error) or "no message from the service"
    if error.status_code == 400 and getattr(error, "error", None) is None:  # not a Key Vault error body
        message += f" (does the vault support API version {settings_from(args).api_version or 'of the SDK'}?)"
    retry_after = error.response.headers.get("Retry-After") if error.response is not None else None
    if error.status_code == 429 and retry_after:
        message += f" (throttled: run again after {retry_after} s)"
    return f"{kind}: HTTP {status}: {message}"


def credential_failure(error: ClientAuthenticationError) -> str:
    """DefaultAzureCredential's many lines, cut to the credentials that were configured and still failed."""
    tried = [line.strip() for line in str(error.message).splitlines() if line.startswith("\t")]
    failed = [line for line in tried if not _UNCONFIGURED.search(line)]
    if failed:
        return "; ".join(failed)
    if tried:
        return ("no Azure credential is configured (AZURE_CLIENT_ID/AZURE_TENANT_ID/..., workload identity, "
                "managed identity; for the emulator IDENTITY_ENDPOINT and IDENTITY_HEADER)")
    return first_line(error)


def service_message(error: HttpResponseError) -> str:
    odata = getattr(error, "error", None)
    if odata is not None and odata.message:
        return " ".join(odata.message.split())
    text = error.response.text() if error.response is not None else ""
    return " ".join(text.split())[:300]


def first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return " ".join(text.strip().split("\n", 1)[0].split())


def print_line(outcome: Outcome) -> None:
    print(f"{outcome.name:<32} {outcome.action:<8} {outcome.version:<32} {outcome.thumbprint} {outcome.not_after}",
          flush=True)
    if outcome.reason:
        print(f"  {outcome.name}: new version because {outcome.reason}", file=sys.stderr, flush=True)


def open_vault(settings: VaultSettings):
    try:
        return open_clients(settings)
    except ValueError as error:  # e.g. AZURE_AUTHORITY_HOST that is not https
        raise UsageError(f"Azure credential settings: {first_line(error)}") from None


def run(argv: list[str] | None = None) -> int:
    logging.getLogger("azure").addHandler(logging.NullHandler())  # failures are reported once, below
    args = None
    try:
        args = parser().parse_args(argv)
        settings, plan = settings_from(args), plan_from(args)
        vault = open_vault(settings)
        try:
            summary = {}
            for outcome in seed(vault, plan):
                summary[outcome.name] = outcome.as_json()
                if not args.json:
                    print_line(outcome)
        finally:
            vault.close()
        if args.json:
            print(json.dumps(summary, indent=2))
        return 0
    except KeyboardInterrupt:
        return 130
    except (UsageError, SeedError, AzureError) as error:
        return fail(error, args)
    except ValueError as error:
        if "challenge" not in str(error):
            raise
        return fail(error, args)


def fail(error: Exception, args: argparse.Namespace | None) -> int:
    print(f"keyvault-certs: error: {describe_error(error, args)}", file=sys.stderr)
    return 2 if isinstance(error, UsageError) else 1


if __name__ == "__main__":
    sys.exit(run())
