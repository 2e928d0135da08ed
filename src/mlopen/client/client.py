"""A small Python client for the mlopen REST API (/api/v1/). No Django needed.

    from mlopen.client import Client

    mlopen = Client("http://localhost:8000", token="...")
    pipeline = mlopen.upload_pipeline("knn.py", name="knn")
    run = mlopen.start_run("knn", input="iris.csv", params={"k": 5})  # a local file is uploaded first
    run = mlopen.wait(run["id"])  # or start_run(..., wait=30): the finished run, if it took under 30 s
    mlopen.download_result(run["id"], "out.csv")

Methods return the API's JSON (dicts). Failures raise MlopenError subclasses whose message is
one readable sentence: ConnectionFailed (no answer), ApiError (a 4xx/5xx answer: AuthError,
PermissionDenied, NotFound, Conflict), ConfigError (no server or token).
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

FINISHED = ("succeeded", "failed", "cancelled")
ProgressCallback = Callable[[int, int | None], None]


class MlopenError(Exception):
    """Anything the client reports to its caller; ``str(exc)`` is a one-line explanation."""


class ConfigError(MlopenError):
    """No server URL or token, or an unreadable config file."""


class ConnectionFailed(MlopenError):
    """The server could not be reached, or did not answer in time."""


class ApiError(MlopenError):
    """The server answered with an error. ``detail`` and ``errors`` come from its JSON body."""

    def __init__(self, status: int, detail: str, errors: dict | None = None, body: Any = None):
        self.status = status
        self.detail = detail
        self.errors = errors or {}
        self.body = body
        super().__init__(self._message())

    def _message(self) -> str:
        message = self.detail.rstrip()
        # Field errors the detail does not already say (e.g. which parameter was wrong).
        extra = [
            f"{field}: {text}"
            for field, text in self.errors.items()
            if str(text) not in message and field.split(".")[0] not in message.lower() and field != "non_field_errors"
        ]
        if extra:
            message = f"{message.rstrip('.')}. {'; '.join(extra[:5])}"
        return f"{message} (HTTP {self.status})"


class AuthError(ApiError):
    """401: no token, or the server does not know it."""


class PermissionDenied(ApiError):
    """403: the token's user may not do this."""


class NotFound(ApiError):
    """404: no such object (or not visible to this user)."""


class Conflict(ApiError):
    """409: the object's state does not allow this (e.g. cancelling a finished run)."""


class TooManyRequests(ApiError):
    """429: a limit was reached (runs queued at once, the request rate); ``retry_after`` says in how
    many seconds trying again may succeed (the server's Retry-After), or None."""

    def __init__(self, status: int, detail: str, errors: dict | None = None, body: Any = None, retry_after=None):
        self.retry_after: int | None = retry_after
        super().__init__(status, detail, errors, body)

    def _message(self) -> str:
        message = super()._message()
        if self.retry_after is not None and "try again" not in self.detail.lower():
            message = f"{message}; try again in {self.retry_after} s"
        return message


_ERROR_CLASSES = {401: AuthError, 403: PermissionDenied, 404: NotFound, 409: Conflict, 429: TooManyRequests}


def normalize_url(url: str) -> str:
    """'localhost:8000/' -> 'http://localhost:8000'; a trailing /api/v1 is dropped too."""
    url = url.strip().rstrip("/")
    if not url:
        raise ConfigError("the server URL is empty")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the server URL must start with http:// or https:// (got {url!r})")
    for suffix in ("/api/v1", "/api"):
        url = url.removesuffix(suffix)
    return url


class _ProgressReader:
    """A binary file whose reads report progress; httpx streams multipart files through read()."""

    def __init__(self, handle: BinaryIO, total: int | None, callback: ProgressCallback):
        self._handle = handle
        self._total = total
        self._callback = callback
        self._sent = 0
        self.name = handle.name

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sent += len(chunk)
        self._callback(self._sent, self._total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        if whence == 0 and offset == 0:
            self._sent = 0
        return position

    def tell(self) -> int:
        return self._handle.tell()

    def fileno(self) -> int:
        return self._handle.fileno()


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# The longest a single request asks the server to hold it (the server caps it too, at 60 s by default).
MAX_WAIT_PER_REQUEST = 30.0


class Client:
    """One mlopen server and one user's token."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None
    ):
        self.url = normalize_url(url)
        self.token = token
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "mlopen-client"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, stream: bool = False, **kwargs) -> httpx.Response:
        request = self._http.build_request(method, f"/api/v1/{path.lstrip('/')}", **kwargs)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise ConnectionFailed(f"{self.url} did not answer in time ({method} {request.url.path})") from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectionFailed(f"cannot reach {self.url}: {reason}") from None
        if response.status_code >= 300:
            if stream:
                response.read()
                response.close()
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> MlopenError:
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("Location", "elsewhere")
            return ApiError(
                status,
                f"The server redirected {response.request.url.path} to {where}; check the server URL ({self.url})",
            )
        body = None
        try:
            body = response.json()
        except ValueError:
            pass
        if isinstance(body, dict) and "detail" in body:
            detail = str(body["detail"])
            errors = body.get("errors") if isinstance(body.get("errors"), dict) else {}
        else:
            text = " ".join(response.text.split())[:200] if response.text else ""
            detail = f"{response.reason_phrase or 'Error'}" + (f": {text}" if text and "<" not in text[:1] else "")
            errors = {}
            if status in (404, 405) and not isinstance(body, dict):
                detail += f" — is {self.url} an mlopen server?"
        if status == 404 and detail.strip() in ("Not found.", "Not Found"):
            # The server answers the same for "no such object" and "not yours"; name what was asked for.
            match = re.match(r"/api/v1/(runs|datasets|pipelines)/(\d+)/", response.request.url.path)
            if match:
                detail = f"There is no {match.group(1)[:-1]} {match.group(2)}, or you cannot see it."
        if status == 401:
            detail = (
                f"{detail.rstrip('.')}. The server did not accept the token; check MLOPEN_TOKEN or run `mlopen login`"
            )
        cls = _ERROR_CLASSES.get(status, ApiError)
        if cls is TooManyRequests:
            wait = response.headers.get("Retry-After", "")
            return TooManyRequests(
                status, detail, errors, body, int(wait) if wait.isascii() and wait.isdigit() else None
            )
        return cls(status, detail, errors, body)

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"The server answered {method} {path} with something that is not JSON; is {self.url} an mlopen server?",
            ) from None

    def get(self, path: str, **params) -> Any:
        """GET any API path (relative to /api/v1/) and return its JSON; None-valued params are left out."""
        return self._json("GET", path, params={k: v for k, v in params.items() if v is not None})

    def paginate(self, path: str, **params) -> Iterator[dict]:
        """Every item of a paginated list, fetching page after page."""
        page = 1
        while True:
            body = self.get(path, page=page, **params)
            yield from body["results"]
            if not body.get("next"):
                return
            page += 1

    # --- who am I ---------------------------------------------------------------------------

    def me(self) -> dict:
        return self.get("me/")

    # --- API tokens (the server keeps only their digests) -----------------------------------

    def tokens(self) -> list[dict]:
        return list(self.paginate("me/tokens/"))

    def create_token(
        self, name: str, expires_in_days: int | None = None, *, username: str | None = None, password: str = ""
    ) -> dict:
        """A new token (its value is in the answer's "token", shown this once). With ``username``, the
        request signs in with the password instead of a token: how `mlopen login --username` gets one."""
        headers = {}
        if username is not None:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        body = {"name": name, "expires_in_days": expires_in_days}
        return self._json("POST", "me/tokens/", json=body, headers=headers)

    def rotate_token(self, token_id: int) -> dict:
        """Replace a token with a new one of the same name and lifetime; the old one stops working."""
        return self._json("POST", f"me/tokens/{int(token_id)}/rotate/")

    def revoke_token(self, token_id: int) -> None:
        self._send("DELETE", f"me/tokens/{int(token_id)}/")

    # --- pipelines --------------------------------------------------------------------------

    def pipelines(self, *, page: int | None = None, page_size: int | None = None, name: str | None = None) -> dict:
        return self.get("pipelines/", page=page, page_size=page_size, name=name)

    def pipeline(self, ref: int | str) -> dict:
        """A pipeline's detail, by id or by name."""
        text = str(ref).strip()
        if text.isdigit():
            try:
                return self.get(f"pipelines/{text}/")
            except NotFound:
                pass  # a pipeline may be named "42"
        found = self.pipelines(name=text)["results"]
        if not found:
            raise NotFound(404, f"There is no pipeline {text!r}.")
        return self.get(f"pipelines/{found[0]['id']}/")

    def upload_pipeline(
        self,
        control: str | Path,
        support_files: list[str | Path] = (),
        *,
        name: str | None = None,
        requirements: str | Path | None = None,
        description: str | None = None,
        pipeline_id: int | None = None,
        runtime: str | None = None,
    ) -> dict:
        """Upload a control file (and files placed beside it) as a new pipeline or its next version.

        With ``pipeline_id`` the upload becomes the next version of that pipeline; otherwise of the
        pipeline called ``name`` (default: the control file's name without .py), created if new.
        """
        support = support_entries(Path(control), [Path(p) for p in support_files])
        paths = [Path(control), *[path for _name, path in support]]
        if requirements:
            paths.append(Path(requirements))
        for path in paths:
            if not path.is_file():
                raise MlopenError(f"{path}: no such file")
        handles = []
        try:

            def attach(field: str, path: Path, name: str | None = None):
                handle = open(path, "rb")
                handles.append(handle)
                # The server keeps a support file's relative path from its multipart filename.
                return (field, (name or path.name, handle, "application/octet-stream"))

            files = [attach("control", Path(control))]
            files += [attach("support_files", path, name) for name, path in support]
            if requirements:
                files.append(attach("requirements", Path(requirements)))
            data = {}
            if description is not None:
                data["description"] = description
            if runtime:
                data["runtime"] = runtime
            if pipeline_id is not None:
                target = f"pipelines/{pipeline_id}/versions/"
            else:
                target = "pipelines/"
                if name:
                    data["name"] = name
            # The server loads the control file (get_params) before answering: allow it time.
            return self._json("POST", target, files=files, data=data, timeout=httpx.Timeout(300.0, connect=10.0))
        finally:
            for handle in handles:
                handle.close()

    def pipeline_versions(self, pipeline_id: int, **page) -> dict:
        return self.get(f"pipelines/{pipeline_id}/versions/", **page)

    def trained_models(self, pipeline_id: int, **page) -> dict:
        return self.get(f"pipelines/{pipeline_id}/models/", **page)

    def model(self, pipeline_id: int, model_id: int) -> dict:
        """A trained model: its aliases, how it was trained, how many runs used it."""
        return self.get(f"pipelines/{int(pipeline_id)}/models/{int(model_id)}/")

    def set_model_aliases(self, pipeline_id: int, model_id: int, aliases: list[str]) -> dict:
        """Make exactly ``aliases`` the model's (each moved here from the model that had it)."""
        return self._json("PATCH", f"pipelines/{int(pipeline_id)}/models/{int(model_id)}/", json={"aliases": aliases})

    def download_model(self, pipeline_id: int, model_id: int, destination: str | Path | BinaryIO) -> int:
        """Write the model's stored objects (a pickle) to a path or binary file; return the bytes written."""
        return self._download(f"pipelines/{int(pipeline_id)}/models/{int(model_id)}/download/", {}, destination)

    # --- datasets ---------------------------------------------------------------------------

    def datasets(self, *, page: int | None = None, page_size: int | None = None) -> dict:
        return self.get("datasets/", page=page, page_size=page_size)

    def dataset(self, dataset_id: int) -> dict:
        return self.get(f"datasets/{int(dataset_id)}/")

    def upload_dataset(
        self, path: str | Path, *, name: str | None = None, progress: ProgressCallback | None = None
    ) -> dict:
        """Upload a file as a dataset, streamed from disk; ``progress(sent, total)`` is called as it goes."""
        path = Path(path)
        if not path.is_file():
            raise MlopenError(f"{path}: no such file")
        with open(path, "rb") as handle:
            body: Any = handle
            if progress is not None:
                body = _ProgressReader(handle, path.stat().st_size, progress)
            data = {"name": name} if name else {}
            return self._json(
                "POST",
                "datasets/",
                files={"file": (path.name, body, "application/octet-stream")},
                data=data,
                timeout=httpx.Timeout(300.0, connect=10.0),
            )

    def preview_dataset(self, dataset_id: int) -> dict:
        return self.get(f"datasets/{int(dataset_id)}/preview/")

    def dataset_stats(self, dataset_id: int) -> dict:
        """A CSV dataset's row count and per-column statistics (see GET /api/v1/datasets/<id>/stats/)."""
        return self.get(f"datasets/{int(dataset_id)}/stats/")

    def download_dataset(self, dataset_id: int, destination: str | Path | BinaryIO) -> int:
        return self._download(f"datasets/{int(dataset_id)}/download/", {}, destination)

    def delete_dataset(self, dataset_id: int) -> None:
        self._send("DELETE", f"datasets/{int(dataset_id)}/")

    # --- runs -------------------------------------------------------------------------------

    def runs(
        self,
        *,
        page: int | None = None,
        page_size: int | None = None,
        pipeline: str | int | None = None,
        kind: str | None = None,
        status: str | None = None,
        user: str | None = None,
        **search: str | int | None,
    ) -> dict:
        """A page of runs; ``search`` takes the list's other parameters (q, tag, version,
        created_after, created_before, ordering, columns)."""
        return self.get(
            "runs/", page=page, page_size=page_size, pipeline=pipeline, kind=kind, status=status, user=user, **search
        )

    def update_run(self, run_id: int, **fields: Any) -> dict:
        """Change a run's ``name``, ``notes`` or ``tags`` (a list: the run's whole set of tags)."""
        return self._json("PATCH", f"runs/{int(run_id)}/", json=fields)

    def delete_runs(self, run_ids: list[int]) -> int:
        """Delete finished runs with their results (all or none); how many were deleted."""
        return self._json("POST", "runs/bulk-delete/", json={"ids": [int(pk) for pk in run_ids]})["deleted"]

    def compare_runs(self, run_ids: list[int]) -> dict:
        return self.get("runs/compare/", ids=",".join(str(int(pk)) for pk in run_ids))

    def run(self, run_id: int) -> dict:
        return self.get(f"runs/{int(run_id)}/")

    def start_run(
        self,
        pipeline: int | str,
        *,
        train: bool = False,
        input: int | str | Path | None = None,
        params: dict | None = None,
        timeout: int | None = None,
        wait: float | None = None,
        upload_progress: ProgressCallback | None = None,
        model: int | str | None = None,
        version: int | None = None,
    ) -> dict:
        """Queue a run (or, with ``train=True``, a training) of a pipeline's latest version.

        ``input`` is a dataset id, or a path to a local file that is uploaded first. Parameter
        values may be given as text: the server converts them to each parameter's type. With
        ``wait`` (seconds), the server answers once the run has finished (or when the wait is over),
        so a quick run comes back with its status and result in this one request.
        """
        dataset_id = None
        if input is not None:
            dataset_id = self.resolve_input(input, progress=upload_progress)
        body: dict[str, Any] = {"pipeline": pipeline, "kind": "train" if train else "run", "params": params or {}}
        if dataset_id is not None:
            body["input"] = dataset_id
        if timeout is not None:
            body["timeout"] = timeout
        if model is not None:
            body["model"] = model  # an id, or an alias such as "production"
        if version is not None:
            body["version"] = version
        if wait:
            body["wait"] = min(float(wait), MAX_WAIT_PER_REQUEST)
        return self._json(
            "POST", "runs/", json=body, timeout=httpx.Timeout(self.timeout + body.get("wait", 0), connect=10.0)
        )

    def resolve_input(self, value: int | str | Path, progress: ProgressCallback | None = None) -> int:
        """A dataset id for ``value``: an existing local file is uploaded, digits are taken as an id."""
        if isinstance(value, int):
            return value
        if isinstance(value, Path) or os.path.isfile(str(value)):
            return self.upload_dataset(value, progress=progress)["id"]
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        raise MlopenError(f"{text}: no such file, and not a dataset id")

    def cancel_run(self, run_id: int) -> dict:
        return self._json("POST", f"runs/{int(run_id)}/cancel/")

    def rerun(self, run_id: int, **changes: Any) -> dict:
        """Run again what run ``run_id`` asked, with ``changes`` (pipeline, version, model, input,
        params: only the values to change, timeout)."""
        return self._json("POST", f"runs/{int(run_id)}/rerun/", json=changes)

    def logs(self, run_id: int, offset: int = 0) -> tuple[str, int, str]:
        """(log text from ``offset`` on, the offset to ask for next, the run's status)."""
        response = self._send("GET", f"runs/{int(run_id)}/logs/", params={"offset": offset} if offset else {})
        text = response.text
        try:
            next_offset = int(response.headers.get("X-Log-Offset", ""))
        except ValueError:
            next_offset = offset + len(text)
        return text, next_offset, response.headers.get("X-Run-Status", "")

    def result(self, run_id: int, *, page: int | None = None, page_size: int | None = None) -> dict:
        return self.get(f"runs/{int(run_id)}/result/", page=page, page_size=page_size)

    def download_result(self, run_id: int, destination: str | Path | BinaryIO, format: str = "csv") -> int:
        """Write the whole result table (csv or json), or the table and the result's images (zip), to a
        path or binary file; return the bytes written."""
        if format not in ("csv", "json", "zip"):
            raise MlopenError(f"format must be csv, json or zip, not {format!r}")
        return self._download(f"runs/{int(run_id)}/download/", {"format": format}, destination)

    def wait(
        self,
        run_id: int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[dict], None] | None = None,
    ) -> dict:
        """Wait until the run has finished; return its final detail. ``on_update(run)`` sees it every
        ``poll`` seconds meanwhile.

        Each request long-polls (GET ?wait=): the server answers the moment the run finishes, or
        after ``poll`` seconds with the run as it is then, so a short run is seen finished at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        step = min(max(poll, 0.05), MAX_WAIT_PER_REQUEST)
        while True:
            if deadline is not None:
                step = max(0.0, min(step, deadline - time.monotonic()))
            asked = time.monotonic()
            run = self._json(
                "GET",
                f"runs/{int(run_id)}/",
                params={"wait": f"{step:.3f}"},
                timeout=httpx.Timeout(self.timeout + step, connect=10.0),
            )
            if on_update is not None:
                on_update(run)
            if run["status"] in FINISHED:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise MlopenError(f"run {run_id} is still {run['status']} after {timeout:g} s")
            # A server with all its waiting slots taken answers at once: do not ask again at once.
            early = step - (time.monotonic() - asked)
            if early > 0.05:
                time.sleep(min(early, 0.5))

    # --- downloads --------------------------------------------------------------------------

    def _download(self, path: str, params: dict, destination) -> int:
        response = self._send("GET", path, params=params, stream=True)
        written = 0
        try:
            if hasattr(destination, "write"):
                for chunk in response.iter_bytes():
                    destination.write(chunk)
                    written += len(chunk)
                return written
            target = Path(destination)
            # Into a temporary file beside the target first: a broken download leaves no half file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a downloaded file gets the usual mode
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        written += len(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return written
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"the download from {self.url} broke off: {exc or type(exc).__name__}") from None
        finally:
            response.close()


# Left out of a folder given as support, as the upload page leaves them out of a picked folder.
_SKIPPED_NAMES = {"__pycache__", "__MACOSX"}


def support_entries(control: Path, support: list[Path]) -> list[tuple[str, Path]]:
    """(name on the server, local path) of each support file. A folder brings its files under its
    own name (``textnet`` gives ``textnet/model.py``...), hidden files and ``__pycache__`` left out;
    a file inside the control file's folder keeps its path from there (``textnet/vocab.txt``); any
    other file goes beside the control file under its own name."""
    base = control.resolve().parent
    entries: list[tuple[str, Path]] = []
    for given in support:
        if given.is_dir():
            root = given.resolve()
            for path in sorted(root.rglob("*")):
                relative = path.relative_to(root.parent)
                if path.is_file() and not any(p.startswith(".") or p in _SKIPPED_NAMES for p in relative.parts):
                    entries.append((relative.as_posix(), path))
            continue
        resolved = given.resolve()
        inside = resolved.is_relative_to(base)
        entries.append((resolved.relative_to(base).as_posix() if inside else given.name, given))
    return entries
