"""The emulator process: moto's server with our extensions and a persistent journal.

Run as `python -m breedops.local.server --port N --state-dir DIR`; `breedops local up` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from breedops.local import iam_enforcement
from breedops.local.credentials import ADMIN_USER, EmulatorCredentials, from_environment
from breedops.local.front_door import FrontDoor
from breedops.local.implied_actions import AUDIT_FILE_VARIABLE
from breedops.settings import DEFAULT_REGION

log = logging.getLogger("breedops.local.server")
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "AdministratorAccess", "Effect": "Allow", "Action": "*", "Resource": "*"}]}
# An emulator without a state dir runs its jobs under a temporary dir named by its pid.
JOBS_DIR_PREFIX = "breedops-jobs-"
_JOBS_DIR_NAME = re.compile(re.escape(JOBS_DIR_PREFIX) + r"(?P<pid>[0-9]+)-[^-]+$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument(
        "--state-dir", type=Path, default=None,
        help="directory of the persistent journal; without it, state lives in memory only",
    )
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: Any) -> None:
    from breedops.local.sagemaker_jobs import api as sagemaker_jobs

    sagemaker_jobs.shutdown()  # a training job's processes must not outlive the emulator
    sys.exit(0)


def temporary_jobs_dir() -> Path:
    """A jobs dir for an emulator without state, removed at exit (`remove_jobs_dir`).

    Named by the emulator's pid, so that the dirs of emulators that were killed (SIGKILL gives
    no chance to clean up) are removed by the next one instead of piling up (jobs write
    hundreds of MB).
    """
    root = Path(tempfile.gettempdir())
    for orphan in root.glob(JOBS_DIR_PREFIX + "*"):
        match = _JOBS_DIR_NAME.match(orphan.name)
        try:
            mine = orphan.is_dir() and orphan.stat().st_uid == os.getuid()
        except OSError:
            continue
        if match and mine and not psutil.pid_exists(int(match["pid"])):
            log.info("removing %s, left by an emulator that is gone", orphan)
            remove_jobs_dir(orphan)
    return Path(tempfile.mkdtemp(prefix=f"{JOBS_DIR_PREFIX}{os.getpid()}-", dir=root))


def remove_jobs_dir(path: Path) -> None:
    shutil.rmtree(path, onerror=lambda _f, p, e: log.warning("could not remove %s: %s", p, e[1]))


def bootstrap_admin(credentials: EmulatorCredentials) -> None:
    """The account's first principal, as the launcher generated its key (idempotent)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    backend = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    if ADMIN_USER not in backend.users:
        backend.create_user(DEFAULT_REGION, ADMIN_USER)
    backend.put_user_policy(ADMIN_USER, "AdministratorAccess", json.dumps(ADMIN_POLICY))
    user = backend.get_user(ADMIN_USER)
    if not any(k.access_key_id == credentials.access_key_id for k in user.access_keys):
        key = user.create_access_key(prefix="AKIA")
        key.access_key_id = credentials.access_key_id
        key.secret_access_key = credentials.secret_access_key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # IAM is enforced from the first request, as on AWS; the bootstrap admin holds the first key.
    os.environ.setdefault(iam_enforcement.ENFORCEMENT_VARIABLE, "0")
    # moto would answer any web page's preflight with Access-Control-Allow-Origin: its Origin.
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    if args.state_dir:  # every IAM decision, for the deny-matrix tests and for review
        os.environ.setdefault(AUDIT_FILE_VARIABLE, str(args.state_dir / "iam-audit.jsonl"))
    # moto reads its settings at import time, so the imports come after argument parsing.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    from breedops.local import iam_simulation, lambda_invoke, moto_extensions, service_roles
    from breedops.local.journal import (
        Journal,
        JournalingApp,
        make_backend_creation_deterministic,
        make_multipart_upload_ids_deterministic,
    )
    from breedops.local.sagemaker_jobs import api as sagemaker_jobs
    from breedops.local.sagemaker_jobs import records

    _list_moto_modules_once()
    moto_extensions.apply()
    lambda_invoke.apply()  # Invoke runs the function locally, as its role, with its concurrency
    sagemaker_jobs.apply()  # training and tuning jobs run, as SageMaker runs them
    iam_simulation.apply()  # the SageMaker SDK v3 validates the execution role with it
    if iam_enforcement.enabled():  # resources and conditions checked as AWS does
        iam_enforcement.apply()
    make_backend_creation_deterministic()
    make_multipart_upload_ids_deterministic()
    journal = Journal(args.state_dir / "journal") if args.state_dir else None
    app = JournalingApp(sagemaker_jobs.routes(DomainDispatcherApplication(create_backend_app)),
                        journal)
    records.set_app(app)
    credentials = from_environment()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    jobs_dir = (args.state_dir / "jobs") if args.state_dir else temporary_jobs_dir()
    try:
        sagemaker_jobs.configure(f"http://{args.host}:{args.port}", jobs_dir)
        sagemaker_jobs.suspend()  # a replayed job is a record, not a run
        app.replay()  # before binding: the port answers only once the state is back
        sagemaker_jobs.resume()
        if credentials is not None:
            bootstrap_admin(credentials)
            app.on_reset = lambda: bootstrap_admin(credentials)
        elif iam_enforcement.enabled():
            log.warning("no bootstrap admin: only keys made in unauthenticated requests will work")
        log.info("emulator listening on http://%s:%d", args.host, args.port)
        service_app = service_roles.ServiceApp(
            app, credentials.service_token if credentials else None)
        # Outermost: a web page is refused before any route, /moto-api and /_breedops included.
        run_simple(args.host, args.port, FrontDoor(service_app, args.port, args.host),
                   threaded=True, request_handler=MotoRequestHandler)
    finally:
        if not args.state_dir:
            remove_jobs_dir(jobs_dir)
    return 0



def _list_moto_modules_once() -> None:
    """moto's dispatcher lists its package folder (a `listdir` and ~150 `isdir`) on every
    request to find the service: a quarter of an S3 PUT's time here. The folder does not change
    while the server runs, so list it once."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


if __name__ == "__main__":
    raise SystemExit(main())
