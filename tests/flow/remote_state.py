"""A snapshot of everything remote a merge can touch, to prove a failed run left no trace.

Read straight from the services (registry HTTP API, the bare Git repository, GitLab's REST API),
not through our clients, so a bug in our registry or GitLab layer cannot hide itself. The Konflux
build output (`konflux/*` repositories) is left out: the build system writes it, not the merge,
and IIB does not own it either.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import httpx

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
NOT_OURS = ("konflux/",)


def _paged(http: httpx.Client, path: str, key: str) -> list[str]:
    """Every item of a paginated distribution listing (the registry caps a page at 1000)."""
    items: list[str] = []
    url: str | None = f"{path}?n=1000"
    while url:
        r = http.get(url)
        if r.status_code == 404 and key == "tags":  # every tag of the repository deleted (a rollback did)
            break
        r.raise_for_status()
        items += r.json().get(key) or []
        link = r.headers.get("Link", "")
        url = link[link.index("<") + 1:link.index(">")] if "<" in link else None
    return items


def registry_tags(base_url: str) -> dict[str, str]:
    """`repo:tag -> digest` for every tag of every repository of a registry (Konflux's excepted).

    Each repository is read on its own thread with its own client: httpcore's sync pool checks and
    closes an "expired" keep-alive connection without the connection's lock, so a thread can close
    the socket another thread was just handed (encode/httpcore#1110); on a loaded box that showed as
    `httpx.ReadError: [Errno 9] Bad file descriptor` in this snapshot."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        repos = [r for r in _paged(http, "/v2/_catalog", "repositories") if not r.startswith(NOT_OURS)]
    assert repos, "the registry lists no repositories"

    def tags_of(repo: str) -> dict[str, str]:
        out = {}
        with httpx.Client(base_url=base_url, timeout=10) as http:
            for tag in _paged(http, f"/v2/{repo}/tags/list", "tags"):
                r = http.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
                if r.status_code == 200:
                    out[f"{repo}:{tag}"] = r.headers["Docker-Content-Digest"]
        return out

    with ThreadPoolExecutor(8) as pool:
        return {k: v for part in pool.map(tags_of, repos) for k, v in part.items()}


def merge_requests(api_url: str, project: str, token: str) -> dict[int, str]:
    """`iid -> state` of every MR of a project (GitLab REST v4)."""
    r = httpx.get(f"{api_url}/projects/{quote(project, safe='')}/merge_requests",
                  params={"state": "all", "per_page": 100}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return {mr["iid"]: mr["state"] for mr in r.json()}


@dataclass(frozen=True)
class RemoteState:
    tags: dict[str, str]
    refs: dict[str, str]
    mrs: dict[int, str]

    def open_or_merged(self) -> dict[int, str]:
        """MRs that matter: a closed MR is how an opened one is undone."""
        return {k: v for k, v in self.mrs.items() if v in ("opened", "merged")}

    def assert_same(self, before: "RemoteState") -> None:
        """Registry tags, branches and live MRs exactly as in `before` (diffs named on failure)."""
        assert before.tags and before.refs, "an empty snapshot proves nothing"
        changed = {k: (before.tags.get(k), self.tags.get(k)) for k in before.tags.keys() | self.tags.keys()
                   if before.tags.get(k) != self.tags.get(k)}
        assert not changed, f"registry tags changed: {changed}"
        assert self.refs == before.refs, f"git branches changed: {before.refs} -> {self.refs}"
        assert self.open_or_merged() == before.open_or_merged(), f"MRs changed: {before.mrs} -> {self.mrs}"


def snapshot(registry_url: str, git_server, project: str, gitlab_api: str, token: str) -> RemoteState:  # noqa: ANN001
    """Everything at once: registry tags, the project's branches (from the bare repo), its MRs."""
    return RemoteState(registry_tags(registry_url), git_server.refs(project),
                       merge_requests(gitlab_api, project, token))
