"""A client for a TorchServe endpoint that people can script, and `mlic predict` on top of it.

    from mlic.serving.client import PredictionClient
    client = PredictionClient.for_root(Paths("."))            # the server `mlic serve` started
    client = PredictionClient(url, KeyFileToken(Path("key_file.json")))   # any other TorchServe
    for result in client.predict_paths([Path("a.jpg"), Path("b.png")]):
        print(result.image, result.status, result.answer or result.error)

Images go as raw bytes with `Content-Type: application/octet-stream` (TorchServe answers a
form-encoded body with a 500 before our handler runs), concurrently (asyncio + httpx), and every
image gets its own `ImageResult`: one bad file never hides the answers for the others.

The token: TorchServe's inference key expires (60 min by default) and a rejected one is answered
400 `InvalidKeyException` (a proxy in front may say 401). A `KeyFileToken` re-reads its key file
on a rejection and, when it knows the management URL, renews an expired key through TorchServe's
token API; a `StaticToken` (`$MLIC_TOKEN`) cannot be renewed. Retries with exponential backoff on
503 (the model could not answer now, a worker is restarting) and on a refused connection (the
server is starting); never on another 4xx, which would fail the same way again.
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from mlic.errors import DataError, MlicError, ServingError
from mlic.paths import Paths
from mlic.serving.endpoint import inference_token, read_key_file, running_endpoint, token_expired
from mlic.serving.predictor import ALL_SCORES_HEADER

TOKEN_ENV = "MLIC_TOKEN"
#: TorchServe answers a missing, wrong or expired token with 400 and this type (not 401).
INVALID_KEY_TYPE = "InvalidKeyException"
TIMEOUT = httpx.Timeout(130.0, connect=5.0)  # TorchServe kills a request after 120 s itself
#: What `mlic predict` picks up from a folder (and a glob's matches are filtered by nothing).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GLOB_CHARACTERS = frozenset("*?[")


# ------------------------------------------------------------------------------------------------
# TorchServe's key file and the token sources
# ------------------------------------------------------------------------------------------------
class TokenSource(Protocol):
    """Where the bearer token comes from, and how a rejected one is replaced."""

    #: Named in error messages ("the token came from ...").
    description: str

    async def token(self, http: httpx.AsyncClient) -> str | None: ...

    async def renew(self, http: httpx.AsyncClient, rejected: str | None) -> str | None:
        """A token other than `rejected`, or None when there is none to be had."""
        ...


@dataclass
class StaticToken:
    """A fixed token (`$MLIC_TOKEN`, or None for a server without token auth): never renewed."""

    value: str | None
    description: str = "the caller"

    @classmethod
    def from_environment(cls) -> StaticToken:
        value = os.environ.get(TOKEN_ENV)
        return cls(value, f"${TOKEN_ENV}" if value else f"nowhere (${TOKEN_ENV} is not set)")

    async def token(self, http: httpx.AsyncClient) -> str | None:
        return self.value

    async def renew(self, http: httpx.AsyncClient, rejected: str | None) -> str | None:
        return None


@dataclass
class KeyFileToken:
    """The inference key of a TorchServe key file, read once and re-read when it is rejected.

    With `management_url` (the server `mlic serve` started) an expired key is renewed through
    TorchServe's token API with the file's non-expiring API key; TorchServe rewrites the file.
    Concurrent requests renew once: the lock makes the others wait and re-read.
    """

    key_file: Path
    management_url: str | None = None
    _current: str | None = field(default=None, repr=False)
    _locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = field(default_factory=dict, repr=False)

    @property
    def description(self) -> str:
        return str(self.key_file)

    def _lock(self) -> asyncio.Lock:
        """A lock per event loop: `predict_paths` runs each call in a fresh one."""
        return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def token(self, http: httpx.AsyncClient) -> str | None:
        if self._current is None:
            self._current = inference_token(self.key_file)
        if self.management_url and token_expired(self.key_file):
            return await self.renew(http, self._current)
        return self._current

    async def renew(self, http: httpx.AsyncClient, rejected: str | None) -> str | None:
        async with self._lock():
            self._current = inference_token(self.key_file)
            if self._current != rejected:  # the server (or a concurrent request) wrote a new key meanwhile
                return self._current
            if self.management_url is None:
                return None
            api_key = read_key_file(self.key_file)["API"]["key"]
            response = await http.post(
                f"{self.management_url}/token",
                params={"type": "inference"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            if response.status_code != 200:
                raise ServingError(
                    f"cannot renew the inference token: HTTP {response.status_code} {response.text.strip()}",
                    file=self.key_file,
                    fix="restart the server: `mlic serve --stop && mlic serve`",
                )
            self._current = inference_token(self.key_file)
            return self._current


# ------------------------------------------------------------------------------------------------
# One request
# ------------------------------------------------------------------------------------------------
def request_headers(token: str | None, all_scores: bool = False) -> dict[str, str]:
    """Raw image bytes, the bearer token, and the all-scores switch (a header: TorchServe drops query strings)."""
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if all_scores:
        headers[ALL_SCORES_HEADER] = "true"
    return headers


def post_image(http: httpx.Client, url: str, image: bytes, token: str | None) -> httpx.Response:
    """One blocking prediction request (the readiness probe of `mlic serve`); a refused connection
    becomes a ServingError naming the URL."""
    try:
        return http.post(url, content=image, headers=request_headers(token))
    except httpx.ConnectError as exc:
        raise ServingError(f"cannot connect to {url} ({exc})", fix="start the server with `mlic serve`") from exc


def error_body(response: httpx.Response) -> dict[str, Any]:
    """TorchServe's and our handler's error JSON ({"code", "type", "message"}), or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text.strip() or response.reason_phrase}
    return body if isinstance(body, dict) else {"message": str(body)}


def is_token_rejection(response: httpx.Response) -> bool:
    """TorchServe says 400 InvalidKeyException; a gateway in front of it says 401."""
    if response.status_code == httpx.codes.UNAUTHORIZED:
        return True
    return response.status_code == 400 and error_body(response).get("type") == INVALID_KEY_TYPE


def answer_error(response: httpx.Response, image: str, token_source: str) -> ServingError:
    """A non-200 answer as a ServingError that names the image and what to do."""
    body = error_body(response)
    message = body.get("message", "")
    status = response.status_code
    if is_token_rejection(response):
        return ServingError(
            f"the server rejected the inference token (HTTP {status}: {message})",
            field="Authorization",
            fix=f"the token came from {token_source}; for a local server restart it with `mlic serve`, "
            f"for another one export {TOKEN_ENV}=<its inference key> or pass --token-file",
        )
    if status == httpx.codes.REQUEST_ENTITY_TOO_LARGE:
        return ServingError(
            "the image is larger than the server accepts",
            file=image,
            fix="shrink it, or raise package.max_request_size",
        )
    if 400 <= status < 500:
        return ServingError(f"HTTP {status}: {message}", file=image, fix=body.get("fix") or "send a valid image file")
    return ServingError(
        f"server error HTTP {status}: {message}",
        file=image,
        fix=body.get("fix") or "see the TorchServe logs (`mlic serve` prints where they are)",
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a 503 or a refused connection."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Exponential backoff (0.5, 1, 2, ... s), or the server's Retry-After when it sends one."""
        if retry_after is not None and retry_after.isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome: its answer, or the error that names it."""

    image: str
    #: HTTP status of the last answer; None when none came (connection refused, timeout, unreadable file).
    status: int | None
    answer: dict[str, Any] | None = None
    error: MlicError | None = None
    attempts: int = 1
    #: From the first try to the last answer, retries and their waits included.
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        error = None if self.error is None else {"message": self.error.message, "fix": self.error.fix}
        return {"image": self.image, "status": self.status, "answer": self.answer, "error": error}


# ------------------------------------------------------------------------------------------------
# The client
# ------------------------------------------------------------------------------------------------
class PredictionClient:
    """Concurrent predictions against one URL, each image answered on its own."""

    def __init__(
        self,
        url: str,
        token: TokenSource | None = None,
        *,
        all_scores: bool = False,
        timeout: httpx.Timeout | float = TIMEOUT,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
    ) -> None:
        if concurrency < 1:
            raise ServingError(
                f"concurrency must be at least 1, got {concurrency}", field="--concurrency", fix="pass 1 or more"
            )
        self.url = url
        self.tokens: TokenSource = token or StaticToken(None)
        self.all_scores = all_scores
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency

    @classmethod
    def for_root(
        cls, paths: Paths, url: str | None = None, token_file: Path | None = None, **options: Any
    ) -> PredictionClient:
        """The server `mlic serve` started under `paths` (its key file, renewed when expired), or
        `url` with the key file given or `$MLIC_TOKEN`."""

        if url is None:
            endpoint = running_endpoint(paths)
            return cls(endpoint.prediction_url, KeyFileToken(endpoint.key_file, endpoint.management_url), **options)
        tokens = KeyFileToken(token_file) if token_file is not None else StaticToken.from_environment()
        return cls(url, tokens, **options)

    def http_client(self) -> httpx.AsyncClient:
        """One connection pool as wide as the concurrency (more connections would only queue)."""
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits)

    async def predict(self, http: httpx.AsyncClient, image: bytes, name: str) -> ImageResult:
        """One image: retried on 503 and refused connections, a rejected token renewed once."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        token = await self.tokens.token(http)
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await http.post(self.url, content=image, headers=request_headers(token, self.all_scores))
            except httpx.ConnectError as exc:
                if attempt < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt - 1))
                    continue
                error = ServingError(
                    f"cannot connect to {self.url} after {attempt} tries ({exc})",
                    file=name,
                    fix="start the server with `mlic serve` (or check --url)",
                )
                return ImageResult(name, None, error=error, attempts=attempt, seconds=loop.time() - started)
            except httpx.TimeoutException as exc:
                error = ServingError(
                    f"no answer from {self.url} in time ({exc!r})", file=name, fix="check the server's logs"
                )
                return ImageResult(name, None, error=error, attempts=attempt, seconds=loop.time() - started)
            if is_token_rejection(response) and not renewed:
                renewed = True
                fresh = await self.tokens.renew(http, token)
                if fresh is not None:
                    token = fresh
                    continue
            if response.status_code == httpx.codes.SERVICE_UNAVAILABLE and attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt - 1, response.headers.get("Retry-After")))
                continue
            seconds = loop.time() - started
            if response.status_code == 200:
                return ImageResult(name, 200, answer=response.json(), attempts=attempt, seconds=seconds)
            error = answer_error(response, name, self.tokens.description)
            return ImageResult(name, response.status_code, error=error, attempts=attempt, seconds=seconds)

    async def predict_all(self, images: Sequence[Path], progress: bool = False) -> list[ImageResult]:
        """Every file, at most `concurrency` in flight, results in the order of `images`."""
        from tqdm import tqdm

        slots = asyncio.Semaphore(self.concurrency)
        with tqdm(total=len(images), desc="predict", unit="image", disable=not progress, leave=False) as bar:

            async def one(http: httpx.AsyncClient, image: Path) -> ImageResult:
                async with slots:
                    try:
                        result = await self.predict(http, image.read_bytes(), str(image))
                    except OSError as exc:
                        error = DataError(f"cannot read the image ({exc.strerror})", file=image, fix="check the path")
                        result = ImageResult(str(image), None, error=error, attempts=0)
                bar.update()
                return result

            async with self.http_client() as http:
                return list(await asyncio.gather(*(one(http, image) for image in images)))

    def predict_paths(self, images: Sequence[Path], progress: bool = False) -> list[ImageResult]:
        """`predict_all` for callers without an event loop."""
        return asyncio.run(self.predict_all(images, progress=progress))


def predict_files(
    paths: Paths, images: Iterable[Path], url: str | None = None, all_scores: bool = False
) -> list[dict[str, Any]]:
    """Every image's answer, in order; the first failed image's error is raised.

    Without `url` the server is the one `mlic serve` started under `paths`, otherwise `url` with
    `$MLIC_TOKEN`.
    """
    results = PredictionClient.for_root(paths, url=url, all_scores=all_scores).predict_paths(list(images))
    for result in results:
        if result.error is not None:
            raise result.error
    return [result.answer for result in results if result.answer is not None]


# ------------------------------------------------------------------------------------------------
# What `mlic predict` reads and prints
# ------------------------------------------------------------------------------------------------
def expand_images(arguments: Iterable[str]) -> list[Path]:
    """Files as given, folders as the images in them (recursively), globs as their matches
    (`**` included), each once, in argument order."""
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if _GLOB_CHARACTERS & set(argument):
            matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True)) if Path(match).is_file()]
            if not matches:
                raise DataError(
                    "the pattern matches no file", file=argument, fix="check the pattern (quote it for the shell)"
                )
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise DataError("the folder holds no image file", file=path, fix=f"image files end in {suffixes}")
        elif path.is_file():
            matches = [path]
        else:
            raise DataError("no such file or folder", file=path, fix="check the path")
        found.update(dict.fromkeys(matches))
    return list(found)


def labels_text(answer: dict[str, Any]) -> str:
    """`boat 0.93, sea 0.81` (plus `| all: ...` when every score was asked for)."""
    text = (
        ", ".join(f"{item['label']} {item['score']:.2f}" for item in answer["labels"]) or "no label above its threshold"
    )
    if "scores" in answer:
        ranked = sorted(answer["scores"].items(), key=lambda pair: -pair[1])
        text += " | all: " + ", ".join(f"{label} {score:.2f}" for label, score in ranked)
    return text


def format_answer(image: Path | str, answer: dict[str, Any]) -> str:
    """`photo.jpg: boat 0.93, sea 0.81` (plus `| all: ...` when every score was asked for)."""
    return f"{image}: {labels_text(answer)}"


def results_table(results: Sequence[ImageResult]) -> str:
    """One row per image: the file, the HTTP status (– when none came), its labels or its error."""
    rows = [
        (
            result.image,
            str(result.status or "–"),
            labels_text(result.answer) if result.answer else str(result.error.message if result.error else ""),
        )
        for result in results
    ]
    header = ("image", "status", "labels (score) or error")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(2)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in [header, *rows])
