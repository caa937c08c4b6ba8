"""Our own exception types.

Every error a user can cause carries *where* (file, field) and *what to do* (fix), so the CLI can
print one readable line without a traceback and map the kind of error to an exit code.
"""

from __future__ import annotations

from pathlib import Path


class MlicError(Exception):
    """Base of every error the user can act on."""

    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        """One human line (plus the fix), naming the file and field when known."""
        where = ""
        if self.file and self.field:
            where = f"{self.file} [{self.field}]: "
        elif self.file:
            where = f"{self.file}: "
        elif self.field:
            where = f"[{self.field}]: "
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ConfigError(MlicError):
    """params.yaml or a --set override is wrong (unknown key, wrong type, bad value)."""

    exit_code = 2


class DataError(MlicError):
    """A dataset file is missing, unreadable or inconsistent."""

    exit_code = 3


class ValidationFailed(MlicError):
    """Great-expectations found problems in the prepared data; the report says which."""

    exit_code = 4


class GraphError(MlicError):
    """The label graph or the label embeddings cannot be built."""

    exit_code = 5


class TrainingError(MlicError):
    """Training cannot go on: diverging loss, out of memory, bad checkpoint."""

    exit_code = 6


class GateFailed(MlicError):
    """The best model is below the mAP floor: nothing may be packaged."""

    exit_code = 7


class ServingError(MlicError):
    """Packaging, starting or querying TorchServe failed."""

    exit_code = 8


class PipelineError(MlicError):
    """Compiling, running or submitting the Kubeflow pipeline failed."""

    exit_code = 9


class StorageError(MlicError):
    """An output cannot be written (disk full, quota exceeded); the previous version is kept."""

    exit_code = 10
