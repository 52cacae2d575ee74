"""kind's local-path provisioner in short: each claim of the default class "standard" gets a directory.

    python -m localkube.kubelet_node.provisioner --state-dir=DIR

The directories are under <state dir>/node/volumes, which the node's mount namespace sees at the same path
(hostPath volumes).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from .kubeapi import Kube
from .storage import LocalPathProvisioner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    provisioner = LocalPathProvisioner(Kube(args.state_dir / "kubeconfig"), args.state_dir / "node" / "volumes")
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    created = False
    while not stopping:
        try:
            if not created:
                provisioner.ensure_storage_class()
                created = True
            provisioner.sync()
        except Exception as error:  # the apiserver restarting or going away: try again shortly
            logging.warning("sync failed: %s", error)
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
