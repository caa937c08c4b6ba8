"""What every `mlic` command group shares: error handling, logging, and the common options.

`mlic.cli` and the command groups it mounts (`mlic pipeline`, `mlic data`) import from here, so
none of them imports another at run time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mlic.errors import MlicError

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="Parameters file.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="Override a parameter: key.sub=value (repeatable).")
]
RootOption = Annotated[Path, typer.Option("--root", help="Project root that holds data/, artifacts/, metrics/.")]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns `mlic serve`'s output


def user_errors(func: F) -> F:
    """Print our errors as one readable block on stderr (no traceback) and exit with their code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MlicError as exc:
            typer.secho(f"error: {exc.render()}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.secho("interrupted: outputs were written atomically, nothing half-written remains", err=True)
            raise typer.Exit(130) from None

    return wrapper  # functools.wraps keeps the signature typer reads


def guarded(action: Callable[[], T]) -> T:
    """Run a command body with logging set up and our errors turned into a message and exit code."""
    setup_logging()
    return user_errors(action)()
