"""The emulator's own secrets: the bootstrap admin's access key and the service token.

The emulator enforces IAM from its first request, as AWS does, so somebody must hold the
account's first key: the bootstrap admin (`breedops-admin`), the local stand-in for whoever owns
the account; Terraform runs as it. The service token lets processes that play an AWS service
(local hosting acting as SageMaker, a test acting as EC2) assume the roles that trust that
service; it never goes to `.local/env`, so a user's `aws` CLI cannot use it.

Generated once per state directory and kept in `credentials.json` (mode 0600); an emulator
without a state directory gets fresh ones. Kept free of moto imports: the CLI reads it.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

ADMIN_USER = "breedops-admin"
CREDENTIALS_FILE = "credentials.json"
# How the launcher hands the secrets to the emulator process (and hosting the token).
ACCESS_KEY_VARIABLE = "BREEDOPS_ADMIN_ACCESS_KEY_ID"
SECRET_KEY_VARIABLE = "BREEDOPS_ADMIN_SECRET_ACCESS_KEY"
SERVICE_TOKEN_VARIABLE = "BREEDOPS_SERVICE_TOKEN"
_KEY_ALPHABET = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class EmulatorCredentials:
    access_key_id: str
    secret_access_key: str
    service_token: str

    @classmethod
    def generate(cls) -> EmulatorCredentials:
        """AWS-shaped: a 20-character `AKIA…` key id and a 40-character secret."""
        return cls(access_key_id="AKIA" + "".join(secrets.choice(_KEY_ALPHABET)
                                                  for _ in range(16)),
                   secret_access_key=secrets.token_urlsafe(30)[:40],
                   service_token=secrets.token_hex(32))

    def server_environment(self) -> dict[str, str]:
        """What the emulator process reads at start."""
        return {ACCESS_KEY_VARIABLE: self.access_key_id,
                SECRET_KEY_VARIABLE: self.secret_access_key,
                SERVICE_TOKEN_VARIABLE: self.service_token}

    def admin_environment(self) -> dict[str, str]:
        """The standard AWS variables of the bootstrap admin."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def load_or_create(directory: Path | None) -> EmulatorCredentials:
    """The credentials kept in `directory`, made (atomically, 0600) on first use."""
    if directory is None:
        return EmulatorCredentials.generate()
    path = directory / CREDENTIALS_FILE
    if path.is_file():
        return EmulatorCredentials(**json.loads(path.read_text()))
    credentials = EmulatorCredentials.generate()
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(credentials), f)
    os.replace(partial, path)
    return credentials


def from_environment(environ: Mapping[str, str] | None = None) -> EmulatorCredentials | None:
    """The credentials the launcher passed to this process (or in `environ`), if any."""
    environ = os.environ if environ is None else environ
    values = [environ.get(v) for v in (ACCESS_KEY_VARIABLE, SECRET_KEY_VARIABLE,
                                      SERVICE_TOKEN_VARIABLE)]
    return EmulatorCredentials(*values) if all(values) else None  # type: ignore[arg-type]
