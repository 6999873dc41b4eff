"""The errors of local hosting: its own, and those answered in the Runtime API's format."""

from __future__ import annotations

import json
from typing import Any

from breedops.errors import BreedopsError


class HostingError(BreedopsError):
    """Local hosting cannot serve a model (bad tarball, unreachable emulator)."""


class RuntimeApiError(Exception):
    """An error answered in the SageMaker Runtime wire format."""

    def __init__(self, status: int, error_type: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.fields = status, error_type, fields

    def body(self) -> bytes:
        return json.dumps({"__type": self.error_type, "message": str(self), **self.fields}).encode()
