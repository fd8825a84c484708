"""GitLab REST v4 stand-in: the subset python-gitlab uses for merge requests, over the git server.

It shares the git server's port and token, like a real GitLab instance: the repo URL
`<url>/<group>/<name>.git` and the API at `<url>/api/v4`. Merging an MR performs a real squash
merge into the target branch of the bare repository. `on_mr_opened` callbacks get
(project, source_branch, head_sha): pipelines-as-code reacts to that event.

Knob: `fail_merge` is a list of HTTP statuses the next merge calls answer with (retry tests).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

from sandbox.gitserver import GitServer, Request, Response, run_git

API = re.compile(r"^/api/v4/projects/(?P<id>[^/]+)(?P<rest>/.*)?$")
MR_PATH = re.compile(r"^/merge_requests(?:/(?P<iid>\d+)(?P<merge>/merge)?)?$")
BRANCH_PATH = re.compile(r"^/repository/branches/(?P<branch>.+)$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


class GitLabAPI:
    """The `/api/v4` routes, added to a GitServer's HTTP server."""

    def __init__(self, git: GitServer) -> None:
        self.git = git
        self.mrs: dict[str, dict[int, dict]] = {}  # project -> iid -> MR json
        self.ids: dict[str, int] = {}
        self.fail_merge: list[int] = []
        self.on_mr_opened: list[Callable[[str, str, str], None]] = []
        self._lock = threading.RLock()
        git.server.routes.insert(0, self.route)
        git.on_push.append(self._pushed)

    @property
    def url(self) -> str:
        return self.git.url

    # -- routing -------------------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        if req.path == "/api/v4/user":
            return Response.json(200, {"id": 1, "username": "sandbox", "name": "Sandbox", "state": "active"})
        m = API.match(req.path)
        if not m:
            return None
        project = self._project(unquote(m["id"]))
        if project is None:
            return Response.json(404, {"message": "404 Project Not Found"})
        rest = m["rest"] or ""
        if not rest and req.method == "GET":
            return Response.json(200, self._project_json(project))
        if mm := MR_PATH.match(rest):
            return self._merge_requests(req, project, mm["iid"], bool(mm["merge"]))
        if (bm := BRANCH_PATH.match(rest)) and req.method == "DELETE":
            return self._delete_branch(project, unquote(bm["branch"]))
        return Response.json(404, {"message": "404 Not Found"})

    def _project(self, ident: str) -> str | None:
        projects = self.git.projects()
        with self._lock:
            for name in projects:
                self.ids.setdefault(name, len(self.ids) + 1)
            if ident.isdigit():
                return next((p for p, i in self.ids.items() if str(i) == ident), None)
            return ident if ident in projects else None

    def _project_json(self, project: str) -> dict:
        return {"id": self.ids[project], "path_with_namespace": project, "name": project.rsplit("/", 1)[-1],
                "default_branch": "main", "web_url": f"{self.url}/{project}",
                "http_url_to_repo": self.git.repo_url(project)}

    def _pushed(self, project: str, moved: dict[str, tuple[str | None, str | None]]) -> None:
        """A push to the source branch of an open MR updates it (and triggers pipelines again)."""
        with self._lock:
            for mr in self.mrs.get(project, {}).values():
                new = moved.get(mr["source_branch"], (None, None))[1]
                if mr["state"] == "opened" and new:
                    mr["sha"] = new
                    for callback in self.on_mr_opened:
                        callback(project, mr["source_branch"], new)

    # -- merge requests ------------------------------------------------------------------------
    def _merge_requests(self, req: Request, project: str, iid: str | None, merge: bool) -> Response:
        with self._lock:
            mrs = self.mrs.setdefault(project, {})
            if iid is None:
                if req.method == "POST":
                    return self._create(project, mrs, {**req.query, **req.json()})
                return Response.json(200, self._filter(mrs.values(), req.query))
            mr = mrs.get(int(iid))
            if mr is None:
                return Response.json(404, {"message": "404 Not found"})
            if merge and req.method == "PUT":
                return self._merge(project, mr, {**req.query, **req.json()})
            if req.method == "PUT":
                return self._update(mr, req.json())
            return Response.json(200, mr)

    @staticmethod
    def _filter(mrs: object, query: dict[str, str]) -> list[dict]:
        keep = []
        for mr in mrs:
            state = query.get("state", "all")
            if state != "all" and mr["state"] != state:
                continue
            if any(query.get(k) not in (None, mr[k]) for k in ("source_branch", "target_branch")):
                continue
            keep.append(mr)
        return sorted(keep, key=lambda m: -m["iid"])

    def _create(self, project: str, mrs: dict[int, dict], data: dict) -> Response:
        source, target = data.get("source_branch"), data.get("target_branch")
        refs = self.git.refs(project)
        if not source or not target or not data.get("title"):
            return Response.json(400, {"message": "source_branch, target_branch and title are required"})
        if source not in refs or target not in refs:
            return Response.json(400, {"message": ["Source branch or target branch does not exist"]})
        if any(m["state"] == "opened" and m["source_branch"] == source and m["target_branch"] == target
               for m in mrs.values()):
            return Response.json(409, {"message": ["Another open merge request already exists for this "
                                                   "source branch"]})
        iid = max(mrs, default=0) + 1
        mrs[iid] = mr = {
            "id": self.ids[project] * 1000 + iid, "iid": iid, "project_id": self.ids[project],
            "title": data["title"], "description": data.get("description", ""), "state": "opened",
            "source_branch": source, "target_branch": target, "sha": refs[source],
            "squash": _truthy(data.get("squash")),
            "force_remove_source_branch": _truthy(data.get("remove_source_branch")),
            "merge_commit_sha": None, "squash_commit_sha": None, "created_at": _now(),
            "web_url": f"{self.url}/{project}/-/merge_requests/{iid}"}
        for callback in self.on_mr_opened:
            callback(project, source, refs[source])
        return Response.json(201, mr)

    @staticmethod
    def _update(mr: dict, data: dict) -> Response:
        event = data.get("state_event")
        if event == "close" and mr["state"] == "opened":
            mr.update(state="closed", closed_at=_now())
        elif event == "reopen" and mr["state"] == "closed":
            mr["state"] = "opened"
        for key in ("title", "description"):
            if key in data:
                mr[key] = data[key]
        return Response.json(200, mr)

    def _merge(self, project: str, mr: dict, data: dict) -> Response:
        if self.fail_merge:
            status = self.fail_merge.pop(0)
            return Response.json(status, {"message": f"{status} sandbox knob"})
        if mr["state"] != "opened":
            return Response.json(405, {"message": "405 Method Not Allowed"})
        squash = _truthy(data.get("squash")) or mr["squash"]
        try:
            sha = self._git_merge(project, mr, squash, data.get("merge_commit_message"))
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip()
            return Response.json(406, {"message": f"Branch cannot be merged: {detail}"})
        mr.update(state="merged", merged_at=_now(), merge_commit_sha=sha,
                  squash_commit_sha=sha if squash else None)
        if mr["force_remove_source_branch"] or _truthy(data.get("should_remove_source_branch")):
            self._delete_branch(project, mr["source_branch"])
        return Response.json(200, mr)

    def _git_merge(self, project: str, mr: dict, squash: bool, message: str | None) -> str:
        """A real merge of source into target in a scratch clone, pushed back to the bare repo."""
        bare = self.git.bare_path(project)
        with self.git.lock, tempfile.TemporaryDirectory(prefix="sandbox-merge-") as tmp:
            work = Path(tmp)
            run_git(work, "clone", "-q", "--branch", mr["target_branch"], str(bare), "w")
            work = work / "w"
            run_git(work, "fetch", "-q", "origin", f"refs/heads/{mr['source_branch']}")
            text = message or f"{mr['title']}\n\n{mr['description']}"
            env_args = ["-c", "user.name=Sandbox GitLab", "-c", "user.email=gitlab@sandbox.local"]
            if squash:
                run_git(work, *env_args, "merge", "--squash", "FETCH_HEAD")
                run_git(work, *env_args, "commit", "-q", "--allow-empty", "-m", text)
            else:
                run_git(work, *env_args, "merge", "--no-ff", "-q", "-m", text, "FETCH_HEAD")
            run_git(work, "push", "-q", "origin", f"HEAD:refs/heads/{mr['target_branch']}")
            return run_git(work, "rev-parse", "HEAD").strip()

    def _delete_branch(self, project: str, branch: str) -> Response:
        with self.git.lock:
            if branch not in self.git.refs(project):
                return Response.json(404, {"message": "404 Branch Not Found"})
            run_git(self.git.bare_path(project), "update-ref", "-d", f"refs/heads/{branch}")
        return Response(204)
