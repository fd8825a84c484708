"""Git smart HTTP on loopback: `git http-backend` (CGI) over bare repositories, with token auth.

Stands in for GitLab's git endpoint so the real git client (through GitPython) clones and pushes
over the real protocol. Any user name is accepted; the password must be the stack's token, like a
GitLab personal access token. Pushing to a project that does not exist creates it (GitLab's "push
to create"), so a fresh `indexflow sandbox up` can take a catalog repo. Also hosts the small
request router the other stand-ins reuse.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

CGI_TIMEOUT = 300.0
PROJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
GIT_PATH = re.compile(r"^/(?P<project>.+?\.git)(?P<rest>/(?:info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.*))$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_query: str = ""

    def json(self) -> dict:
        """The body as JSON, or as a form when the client sent one (python-gitlab sends JSON)."""
        if not self.body:
            return {}
        if "application/x-www-form-urlencoded" in self.headers.get("content-type", ""):
            return dict(parse_qsl(self.body.decode()))
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # sent chunk by chunk until exhausted, then the connection closes

    @classmethod
    def json(cls, status: int, value: object) -> "Response":
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


Route = Callable[[Request], "Response | None"]  # None: not this route's path


class LoopbackServer:
    """A threading HTTP server on 127.0.0.1 that authenticates, then tries its routes in order."""

    def __init__(self, authorized: Callable[[Request], bool], routes: list[Route] | None = None,
                 challenge: str = 'Basic realm="sandbox"') -> None:
        self.routes: list[Route] = list(routes or [])
        self.authorized, self.challenge = authorized, challenge
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sandbox-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def dispatch(self, req: Request) -> Response:
        if not self.authorized(req):
            return Response(401, b'{"message":"401 Unauthorized"}',
                            {"WWW-Authenticate": self.challenge, "Content-Type": "application/json"})
        for route in self.routes:
            resp = route(req)
            if resp is not None:
                return resp
        return Response.json(404, {"message": "404 Not Found"})


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Request body, de-chunked (git sends big pushes with Transfer-Encoding: chunked)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            req = Request(self.command, parts.path, dict(parse_qsl(parts.query)),
                          {k.lower(): v for k, v in self.headers.items()}, _read_body(self), parts.query)
            try:
                resp = server.dispatch(req)
            except Exception as exc:  # a stand-in bug must show up as a 500, not a hung client
                resp = Response.json(500, {"message": f"500 {type(exc).__name__}: {exc}"})
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if resp.stream is not None:  # HTTP/1.0: the body ends when the connection closes
                self.end_headers()
                self._send_stream(resp.stream)
                return
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)

        def _send_stream(self, stream: Iterator[bytes]) -> None:
            try:
                for chunk in stream:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped watching
            finally:
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by design
            pass

    return Handler


def token_matches(req: Request, token: str) -> bool:
    """Basic auth with the token as password, `Authorization: Bearer`, or GitLab's `PRIVATE-TOKEN`."""
    offered = [req.headers.get("private-token", "")]
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(value.strip())
    elif scheme.lower() == "basic":
        try:
            offered.append(base64.b64decode(value.strip()).decode().partition(":")[2])
        except ValueError:
            pass
    return any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered)


def run_git(cwd: Path, *args: str, input: bytes | None = None) -> str:  # noqa: A002
    """A local git command in a bare repo of the stand-in (no network, no credentials)."""
    out = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, timeout=CGI_TIMEOUT,
                         check=True)
    return out.stdout.decode()


class Served:
    """A stand-in reachable through its `server` (a LoopbackServer): url, start, stop."""

    server: LoopbackServer

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "Served":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


class GitServer(Served):
    """Bare repositories under `root`, served at `<url>/<group>/<name>.git` by `git http-backend`.

    `on_push` callbacks get (project, {ref: (old_sha, new_sha)}) after every accepted push, so the
    Konflux stand-in can react to branch moves like pipelines-as-code does.
    """

    def __init__(self, root: Path, token: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.lock = threading.RLock()  # one writer at a time per stack: pushes, merges, deletes
        self.on_push: list[Callable[[str, dict[str, tuple[str | None, str | None]]], None]] = []
        self.server = LoopbackServer(lambda req: token_matches(req, token), [self._git_route])

    def repo_url(self, project: str) -> str:
        return f"{self.url}/{project}.git"

    def bare_path(self, project: str) -> Path:
        return self.root / f"{project}.git"

    def projects(self) -> list[str]:
        """Every `group/.../name` with a bare repo (the walk never descends into a repository)."""
        found = []
        for top, dirs, _ in os.walk(self.root):
            for name in [d for d in dirs if d.endswith(".git")]:
                dirs.remove(name)
                if (Path(top) / name / "HEAD").is_file():
                    found.append(str((Path(top) / name).relative_to(self.root))[: -len(".git")])
        return sorted(found)

    def create_repo(self, project: str) -> Path:
        """An empty bare repository for `project` (kept if it exists)."""
        path = self.bare_path(project)
        if not (path / "HEAD").is_file():
            path.mkdir(parents=True, exist_ok=True)
            run_git(path, "init", "-q", "--bare", "--initial-branch=main")
            run_git(path, "config", "http.receivepack", "true")
        return path

    def publish(self, project: str, source_repo: Path) -> str:
        """Push every branch of a local repository into `project` (creating it); returns its URL."""
        bare = self.create_repo(project)
        with self.lock:
            run_git(Path(source_repo), "push", "-q", "--force", str(bare), "refs/heads/*:refs/heads/*")
        return self.repo_url(project)

    def refs(self, project: str) -> dict[str, str]:
        """Branch name -> sha of a project."""
        out = run_git(self.bare_path(project), "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
        return {ref.removeprefix("refs/heads/"): sha for ref, sha in (ln.split() for ln in out.splitlines())}

    def _git_route(self, req: Request) -> Response | None:
        m = GIT_PATH.match(req.path)
        if not m:
            return None
        project = m["project"][: -len(".git")]
        if not (self.bare_path(project) / "HEAD").is_file():
            if not (req.query.get("service") == "git-receive-pack" and PROJECT_NAME.match(project)):
                return Response(404, b"repository not found\n")
            self.create_repo(project)  # GitLab's "push to create a project"
        if not m["rest"].endswith("git-receive-pack") or req.method != "POST":
            return _http_backend(self.root, req, m["project"] + m["rest"])
        with self.lock:
            before = self.refs(project)
            resp = _http_backend(self.root, req, m["project"] + m["rest"])
            after = self.refs(project)
        moved = {b: (before.get(b), after.get(b)) for b in set(before) | set(after) if before.get(b) != after.get(b)}
        for callback in self.on_push if moved else []:
            callback(project, moved)
        return resp


def _http_backend(root: Path, req: Request, path_info: str) -> Response:
    """Run `git http-backend` as CGI for one request and turn its output into a Response."""
    env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": "/" + path_info,
           "REQUEST_METHOD": req.method, "QUERY_STRING": req.raw_query, "REMOTE_USER": "sandbox",
           "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": req.headers.get("content-type", ""),
           "CONTENT_LENGTH": str(len(req.body)), "PATH": "/usr/bin:/bin",
           "HTTP_CONTENT_ENCODING": req.headers.get("content-encoding", ""),
           "GIT_PROTOCOL": req.headers.get("git-protocol", "")}
    out = subprocess.run(["git", "http-backend"], env=env, input=req.body, capture_output=True,
                         timeout=CGI_TIMEOUT)
    head, sep, body = out.stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = out.stdout.partition(b"\n\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return Response(status, body, headers)
