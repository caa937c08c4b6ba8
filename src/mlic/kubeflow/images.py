"""The Dockerfile's two images: `mlic pipeline images` (`make images`) builds them and records what
it built; `mlic pipeline compile`, `submit`, `components` and `trainjob` take the runtime image
from that record when no `--image` is given.

Why a record: KFP's cache key holds the image string, so a cluster must get the runtime image by
digest (`settings.mutable_image_problem`), and a digest exists only once a registry holds the
image. With `--registry` the images are pushed and the record keeps the digest the registry
answered, so the next compile names exactly the image just built. Without one the record keeps
the local tag and image id: enough for a local engine (kfp.local's DockerRunner, `docker run`),
and compile then refuses the tag as it refuses any, unless `--allow-mutable-tag`.

Builds use BuildKit (the Dockerfile mounts a CA bundle as a build secret) with host networking,
so they also work on an engine started without a bridge network.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlic import __version__
from mlic.errors import PipelineError
from mlic.io import write_json

#: Where `mlic pipeline images` records its builds (.mlic/ is local state, git-ignored).
RECORD_FILE = Path(".mlic") / "images.json"
#: The Dockerfile's targets and the repository name each is tagged with.
IMAGE_NAMES = {"runtime": "mlic-runtime", "serving": "mlic-serving"}
DEFAULT_PYTHON_IMAGE = "python:3.11-slim-bookworm"
#: The build secret id the Dockerfile mounts as pip's CA bundle.
CA_SECRET_ID = "pip-ca"
BUILD_TIMEOUT_S = 3 * 3600


@dataclass(frozen=True)
class BuiltImage:
    """One image as built: its local tag and id, its size, how long the build took, and its
    reference by digest once pushed."""

    target: str
    tag: str
    image_id: str
    size_bytes: int
    build_seconds: float
    pinned: str | None = None

    @property
    def reference(self) -> str:
        """What a pod or `docker run` should name: the digest when pushed, else the local tag."""
        return self.pinned or self.tag


@dataclass(frozen=True)
class BuildOptions:
    """How to build: the base image, where torch comes from per target, a CA bundle for pip
    behind a TLS-inspecting proxy, the registry to push to ("" = keep local)."""

    context: Path = Path(".")
    python_image: str = DEFAULT_PYTHON_IMAGE
    torch_index: dict[str, str] | None = None
    ca_bundle: Path | None = None
    registry: str = ""
    docker: str = "docker"
    version: str = __version__


def local_tag(target: str, options: BuildOptions) -> str:
    """The tag a target is built under, e.g. `mlic-runtime:0.1.0`."""
    return f"{IMAGE_NAMES[target]}:{options.version}"


def _run_docker(options: BuildOptions, *args: str, stream: bool = False) -> str:
    """One docker command; a failure names the command and what to check."""
    command = [options.docker, *args]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    try:
        done = subprocess.run(
            command,
            cwd=options.context,
            env=env,
            text=True,
            stdout=None if stream else subprocess.PIPE,
            stderr=None if stream else subprocess.PIPE,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PipelineError(
            f"{options.docker} not found", field="--docker", fix="install Docker (docs/operations.md, section 2)"
        ) from exc
    if done.returncode:
        detail = "" if stream else f": {(done.stderr or done.stdout).strip()[-2000:]}"
        raise PipelineError(
            f"`{' '.join(command[:3])} …` failed (exit {done.returncode}){detail}",
            fix="read the output above; a BuildKit error about buildx means this docker CLI needs the buildx "
            "plugin (or pass --docker with a CLI that has BuildKit built in)",
        )
    return done.stdout or ""


def engine_version(options: BuildOptions) -> str:
    """The engine's version, or a PipelineError saying none answers."""
    try:
        return _run_docker(options, "version", "--format", "{{.Server.Version}}").strip()
    except PipelineError as exc:
        raise PipelineError(
            f"no Docker engine answers ({exc.message})",
            fix="start one (`dockerd &` as root; docs/operations.md, section 2) or set DOCKER_HOST",
        ) from exc


def build_args(target: str, options: BuildOptions) -> list[str]:
    """`docker build` arguments for one target."""
    args = [
        "build",
        "--network",
        "host",
        "--target",
        target,
        "--tag",
        local_tag(target, options),
        "--build-arg",
        f"PYTHON_IMAGE={options.python_image}",
    ]
    torch_index = (options.torch_index or {}).get(target, "")
    if torch_index:
        args += ["--build-arg", f"TORCH_INDEX={torch_index}"]
    if options.ca_bundle is not None:
        if not options.ca_bundle.is_file():
            raise PipelineError(
                "CA bundle not found", file=options.ca_bundle, field="--ca-bundle", fix="pass a PEM file"
            )
        args += ["--secret", f"id={CA_SECRET_ID},src={options.ca_bundle.resolve()}"]
    return [*args, "."]


def _inspect(options: BuildOptions, image: str, template: str) -> str:
    return _run_docker(options, "image", "inspect", "--format", template, image).strip()


def build(target: str, options: BuildOptions) -> BuiltImage:
    """Build one target (its output streamed), push it when a registry is set, and describe it."""
    if target not in IMAGE_NAMES:
        raise PipelineError(f"unknown image target {target!r}", field="--target", fix=f"one of {sorted(IMAGE_NAMES)}")
    if not (options.context / "Dockerfile").is_file():
        raise PipelineError(
            "no Dockerfile in the build context", file=options.context.resolve(), fix="run it from the repository root"
        )
    started = time.monotonic()
    _run_docker(options, *build_args(target, options), stream=True)
    seconds = time.monotonic() - started
    tag = local_tag(target, options)
    built = BuiltImage(
        target=target,
        tag=tag,
        image_id=_inspect(options, tag, "{{.Id}}"),
        size_bytes=int(_inspect(options, tag, "{{.Size}}")),
        build_seconds=round(seconds, 1),
    )
    return push(built, options) if options.registry else built


def push(built: BuiltImage, options: BuildOptions) -> BuiltImage:
    """Push under the registry and keep the digest the registry answered."""
    remote = f"{options.registry.rstrip('/')}/{built.tag}"
    _run_docker(options, "tag", built.tag, remote)
    _run_docker(options, "push", remote, stream=True)
    repository = remote.rsplit(":", 1)[0]
    digests = json.loads(_inspect(options, remote, "{{json .RepoDigests}}") or "[]")
    pinned = next((digest for digest in digests if digest.startswith(f"{repository}@")), None)
    if pinned is None:
        raise PipelineError(f"the registry gave {remote} no digest", fix="check that the push reached the registry")
    return replace(built, pinned=pinned)


def write_record(path: Path, images: list[BuiltImage]) -> Path:
    """Record the builds (merged into what an earlier run recorded for other targets)."""
    record = read_record(path)
    record.update({image.target: image for image in images})
    return write_json(path, {target: asdict(image) for target, image in record.items()})


def read_record(path: Path) -> dict[str, BuiltImage]:
    """The recorded builds by target ({} when nothing was built here)."""
    if not path.is_file():
        return {}
    try:
        return {target: BuiltImage(**fields) for target, fields in json.loads(path.read_text()).items()}
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"unreadable image record ({exc})", file=path, fix="run `make images` again, or delete the file"
        ) from exc


def recorded_runtime_image(path: Path = RECORD_FILE) -> str | None:
    """The runtime image `make images` built here (by digest when pushed), or None."""
    runtime = read_record(path).get("runtime")
    return runtime.reference if runtime else None
