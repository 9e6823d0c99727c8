"""``python -m airflow_provider_aep.testing`` / ``aep-emulator``: run the emulator until interrupted.

Prints the base URL on the first line of stdout (so scripts can read it), then the
``AIRFLOW_CONN_AEP_DEFAULT`` value to use.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_aep.testing.faults import FaultConfig
from airflow_provider_aep.testing.runs import RunOutcome
from airflow_provider_aep.testing.server import MAPPING_SET_DELETE_ANSWERS, AEPEmulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aep-emulator", description="Offline Adobe Experience Platform emulator (binds 127.0.0.1)."
    )
    p.add_argument("--port", type=int, default=8642, help="TCP port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--client-id", default="emulator-client-id")
    p.add_argument("--client-secret", default="emulator-client-secret")
    p.add_argument("--org-id", default="EMULATOR00000000000000000@AdobeOrg")
    p.add_argument("--tenant-id", default="emulatortenant")
    p.add_argument("--sandbox", action="append", dest="sandboxes", help="sandbox name (repeatable; default: prod)")
    p.add_argument("--token-ttl", type=float, default=86399, help="access token lifetime in seconds")
    p.add_argument("--time-scale", type=float, default=60.0, help="emulated seconds per real second")
    p.add_argument("--run-duration", type=float, default=120.0, help="emulated seconds a run stays inProgress")
    p.add_argument("--default-outcome", choices=RunOutcome.ALL, default=RunOutcome.SUCCESS)
    p.add_argument("--fault-rate", type=float, default=0.0, help="fraction of Platform calls answered 429/500/502/503")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fraction of creates committed then dropped")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--lenient",
        action="store_true",
        help="turn strict mode off: accept calls AEP rejects, as the emulator did before strict mode",
    )
    p.add_argument(
        "--openapi-dir",
        default=None,
        help="a directory of Adobe's OpenAPI spec files to validate requests against too "
        "(default: $AEP_OPENAPI_DIR; needs openapi-core)",
    )
    p.add_argument(
        "--mapping-set-delete",
        choices=MAPPING_SET_DELETE_ANSWERS,
        default=None,
        help="answer to the undocumented DELETE /mappingSets/{id} (default: 405 strict, delete lenient)",
    )
    return p


def emulator_from_args(args: argparse.Namespace) -> AEPEmulator:
    return AEPEmulator(
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        org_id=args.org_id,
        tenant_id=args.tenant_id,
        sandboxes=tuple(args.sandboxes or ("prod",)),
        token_ttl=args.token_ttl,
        time_scale=args.time_scale,
        run_duration=args.run_duration,
        default_outcome=args.default_outcome,
        faults=FaultConfig(rate=args.fault_rate, drop_after_commit_rate=args.drop_rate, seed=args.seed),
        latency=args.latency,
        seed=args.seed,
        strict=not args.lenient,
        openapi_dir=args.openapi_dir,
        mapping_set_delete=args.mapping_set_delete,
    )


def main(argv: Sequence[str] | None = None) -> int:
    emulator = emulator_from_args(build_parser().parse_args(argv))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator.start()
    try:
        print(emulator.base_url, flush=True)
        print(f"AIRFLOW_CONN_AEP_DEFAULT='{emulator.connection_json(emulator.sandboxes[0])}'", flush=True)
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
