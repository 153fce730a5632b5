"""A loopback stand-in for the Hugging Face Hub, so that ``huggingface_hub`` itself downloads from it.

It serves files under the Hub's URLs (``/{repo}/resolve/{revision}/{path}``, with ``spaces/`` or
``datasets/`` in front for those repo types) with the headers ``hf_hub_download`` relies on:
``ETag`` (the sha256, as the Hub gives for LFS files), ``X-Repo-Commit``, ``Content-Length``,
``Accept-Ranges`` and ``206`` answers to ``Range`` requests; missing repos, revisions and files
get 404s with the Hub's ``X-Error-Code``. Point ``HF_ENDPOINT`` (and ``huggingface_hub.constants``)
at :attr:`LoopbackHub.url`. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REQUEST_TIMEOUT_S = 10  # a stuck client cannot hold a handler thread longer than this
_PREFIXES = {"spaces": "space", "datasets": "dataset"}


@dataclass
class _Repo:
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        """A 40-hex commit id that changes whenever any file changes, like a git commit."""
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(path.encode() + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()


class LoopbackHub:
    """Hub-compatible HTTP server on 127.0.0.1 in a background thread; ``start()`` / ``stop()``."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.port: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._cuts: dict[tuple[str, str, str], int] = {}
        self._dead = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ content
    def add_file(self, repo_id: str, path_in_repo: str, data: bytes | Path, repo_type: str = "model") -> None:
        """Host ``data`` (bytes or a local file) at ``path_in_repo`` of ``repo_id``; replaces any previous
        one."""
        content = Path(data).read_bytes() if isinstance(data, Path) else bytes(data)
        with self._lock:
            self.repos.setdefault((repo_type, repo_id), _Repo()).files[path_in_repo] = content

    def add_folder(self, repo_id: str, folder: Path, repo_type: str = "model", prefix: str = "") -> None:
        """Host every file under ``folder`` (relative paths kept, under ``prefix``)."""
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                self.add_file(repo_id, prefix + path.relative_to(folder).as_posix(), path, repo_type)

    def cut_after(self, repo_id: str, path_in_repo: str, n_bytes: int, repo_type: str = "model") -> None:
        """The next GET of this file sends ``n_bytes`` of the body, then the whole server dies."""
        self._cuts[(repo_type, repo_id, path_in_repo)] = n_bytes

    def count(self, method: str, suffix: str) -> int:
        """How many ``method`` requests ended with ``suffix``."""
        return sum(1 for m, p in self.requests if m == method and p.endswith(suffix))

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LoopbackHub:
        """Listen (on the previous port after a stop, so HF_ENDPOINT stays valid)."""
        if self._server is not None:
            return self
        self._dead.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), _make_handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients get 'connection refused' from now on."""
        self._dead.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_S)
            self._thread = None

    def _die_soon(self) -> None:
        self._dead.set()  # from now on, requests still accepted are dropped without an answer
        threading.Thread(target=self.stop, daemon=True).start()

    # ----------------------------------------------------------------- requests
    def _lookup(self, repo_type: str, repo_id: str) -> _Repo | None:
        with self._lock:
            return self.repos.get((repo_type, repo_id))


def _split_repo(parts: list[str]) -> tuple[str, str, list[str]]:
    repo_type = "model"
    if parts and parts[0] in _PREFIXES:
        repo_type, parts = _PREFIXES[parts[0]], parts[1:]
    return repo_type, "/".join(parts[:2]), parts[2:]


def _make_handler(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_TIMEOUT_S

        def log_message(self, format: str, *args) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            if hub._dead.is_set():
                self.close_connection = True
                return
            path = urlsplit(self.path).path
            hub.requests.append((self.command, path))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts and parts[0] == "api":
                return self._api(parts[1:], body)
            repo_type, repo_id, rest = _split_repo(parts)
            if len(rest) < 3 or rest[0] != "resolve":
                return self._error(404, "RepoNotFound", f"unknown route {path}", body)
            revision, filename = rest[1], "/".join(rest[2:])
            repo = hub._lookup(repo_type, repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", body)
            commit = repo.commit
            if revision not in ("main", commit):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
            data = repo.files.get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist", body, commit=commit)
            self._send_file(data, commit, body, (repo_type, repo_id, filename))

        def _send_file(self, full: bytes, commit: str, body: bool, key: tuple[str, str, str]) -> None:
            data, status = full, 200
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes="):
                first, _, last = requested[len("bytes=") :].partition("-")
                start = int(first or 0)
                end = min(int(last) + 1, len(full)) if last else len(full)
                if start >= len(full):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(full)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, status = full[start:end], 206
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(full)}")
            else:
                self.send_response(200)
            self.send_header("ETag", f'"{hashlib.sha256(full).hexdigest()}"')
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not body:
                return
            cut = hub._cuts.pop(key, None) if status == 200 else None
            if cut is None:
                self.wfile.write(data)
                return
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            hub._die_soon()

        def _api(self, parts: list[str], body: bool) -> None:
            kinds = {"models": "model", "spaces": "space", "datasets": "dataset"}
            if not parts or parts[0] not in kinds:
                return self._error(404, "RepoNotFound", "unknown API route", body)
            repo_type, repo_id = kinds[parts[0]], "/".join(parts[1:3])
            repo = hub._lookup(repo_type, repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", body)
            info = {
                "id": repo_id,
                "sha": repo.commit,
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
            }
            self._json(200, info, body, {"X-Repo-Commit": repo.commit})

        def _error(self, status: int, code: str, message: str, body: bool, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message}
            if commit is not None:
                headers["X-Repo-Commit"] = commit
            self._json(status, {"error": message}, body, headers)

        def _json(self, status: int, payload: dict, body: bool, headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
