"""A snapshot of everything remote a merge can touch, to prove a failed run left no trace.

Read straight from the services' own HTTP APIs (not through our clients), so a bug in our
registry or GitLab layer cannot hide itself: registry tags -> digests of every repository, Git
refs, merge request states.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import httpx

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


def registry_tags(base_url: str) -> dict[str, str]:
    """`repo:tag -> digest` for every tag of every repository of a registry."""
    out: dict[str, str] = {}
    with httpx.Client(base_url=base_url, timeout=10) as http:
        repos = http.get("/v2/_catalog", params={"n": 10000}).json().get("repositories") or []
        for repo in repos:
            tags = http.get(f"/v2/{repo}/tags/list").json().get("tags") or []
            for tag in tags:
                r = http.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
                if r.status_code == 200:
                    out[f"{repo}:{tag}"] = r.headers["Docker-Content-Digest"]
    return out


def git_refs(url: str) -> dict[str, str]:
    """`ref -> sha` as `git ls-remote` sees them."""
    text = subprocess.run(["git", "ls-remote", url], check=True, capture_output=True, text=True, timeout=30).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in text.splitlines() if line)}


def merge_requests(api_url: str, project: str, token: str) -> dict[int, str]:
    """`iid -> state` of every MR of a project (GitLab REST v4)."""
    from urllib.parse import quote

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
