"""GitLab merge requests through python-gitlab (merge.md B §7), with IIB's error texts.

The client comes from prefect-gitlab's `GitLabCredentials.get_client()` in the flow; this module
only needs a `gitlab.Gitlab`. Opening is idempotent: a re-run finds the open MR of its branch
instead of opening a second one. Merging retries the answers GitLab gives while it is still
busy with a branch (406/409) and server errors, like IIB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import gitlab
import requests

from indexflow.errors import PublishError

HTTP_TIMEOUT = 30.0  # seconds per GitLab request, as IIB
RETRY_STATUSES = frozenset({406, 409, 500, 502, 503, 504})  # of a merge: 406/409 = not mergeable yet
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class MR:
    iid: int
    web_url: str


def gitlab_client(url: str, token: str) -> gitlab.Gitlab:
    """A python-gitlab client whose every request has a timeout. prefect-gitlab's `get_client()`
    authenticates at once with no timeout, so a dead GitLab hung the run (or raised a bare
    ConnectionError); here the first real call fails with MergeRequests' one-sentence error."""
    return gitlab.Gitlab(url=url, oauth_token=token, timeout=HTTP_TIMEOUT)


def resolve_git_url(index: str, mapping: dict[str, str]) -> str:
    """The Git repo of an index image: the map key is `<registry>/<namespace>/<repo>` (no tag/digest)."""
    key = index.split("@", 1)[0]
    last = key.rsplit("/", 1)[-1]
    if ":" in last:
        key = key[: len(key) - len(last)] + last.split(":", 1)[0]
    url = mapping.get(key)
    if not url:
        raise PublishError(f"Git repository mapping not found for from_index: {index}. "
                           "index_to_gitlab_push_map is required.")
    return url


def project_path(repo_url: str) -> str:
    """`group/name` of an https repo URL (plain http only on loopback, for the sandbox)."""
    parts = urlsplit(repo_url)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)
    path = parts.path.strip("/").removesuffix(".git")
    if not secure or not parts.hostname or "/" not in path:
        raise PublishError(f"Unsupported repository URL format: {repo_url}")
    return path


def _status(exc: Exception) -> str:
    return str(getattr(exc, "response_code", None) or type(exc).__name__)


def _failure(message: str, exc: Exception) -> PublishError:
    """The one boundary where python-gitlab/requests errors become ours: transient for a network
    error or a status that may pass later (408, 429, 5xx); a 403 or 404 fails the same way again."""
    code = getattr(exc, "response_code", None)
    transient = isinstance(exc, requests.RequestException) or code in TRANSIENT_STATUSES
    return PublishError(message, transient=transient)


class MergeRequests:
    """The merge requests of one repository (the project is looked up from its URL)."""

    def __init__(self, gl: gitlab.Gitlab, repo_url: str, merge_retries: int = 3,
                 retry_backoff: float = 5.0) -> None:
        if gl.timeout is None:
            gl.timeout = HTTP_TIMEOUT
        self.gl, self.repo_url, self.path = gl, repo_url, project_path(repo_url)
        self.merge_retries, self.retry_backoff = merge_retries, retry_backoff
        self._project = None

    @property
    def project(self):  # noqa: ANN201 - gitlab.v4.objects.Project
        if self._project is None:
            try:
                self._project = self.gl.projects.get(self.path)
            except (gitlab.GitlabError, requests.RequestException) as exc:
                raise _failure(f"GitLab project {self.path} of {self.repo_url} is not available: "
                               f"{_status(exc)}", exc) from None
        return self._project

    def find_open(self, source: str) -> MR | None:
        """The open MR whose source branch is `source`, if any."""
        try:
            found = self.project.mergerequests.list(source_branch=source, state="opened", get_all=True)
        except (gitlab.GitlabError, requests.RequestException) as exc:
            raise _failure(f"Failed to list merge requests of branch {source}: {_status(exc)}", exc) from None
        found = [m for m in found if m.source_branch == source and m.state == "opened"]
        return MR(found[0].iid, found[0].web_url) if found else None

    def open(self, source: str, target: str, request_id: str) -> MR:
        """Open the MR of a request (or return the one already open for `source`)."""
        existing = self.find_open(source)
        if existing:
            return existing
        try:
            mr = self.project.mergerequests.create({
                "source_branch": source, "target_branch": target,
                "title": f"IIB: Update for request id {request_id}",
                "description": f"Automated merge request created by IIB for request {request_id}",
                "remove_source_branch": True, "squash": True})
        except (gitlab.GitlabError, requests.RequestException) as exc:
            raise _failure(f"Failed to create merge request: {_status(exc)}", exc) from None
        return MR(mr.iid, mr.web_url)

    def close(self, iid: int) -> None:
        """Close an MR; an MR that is already closed stays closed."""
        try:
            mr = self.project.mergerequests.get(iid)
            if mr.state != "closed":
                mr.state_event = "close"
                mr.save()
        except (gitlab.GitlabError, requests.RequestException) as exc:
            raise _failure(f"Failed to close merge request: {_status(exc)}", exc) from None

    def merge(self, iid: int) -> str:
        """Squash-merge an MR, retrying 406/409/5xx and network errors; returns merge_commit_sha."""
        attempt = 0
        while True:
            try:
                mr = self.project.mergerequests.get(iid, lazy=True)
                result = mr.merge(squash=True)
                return result.get("merge_commit_sha") or result.get("squash_commit_sha") or ""
            except (gitlab.GitlabError, requests.RequestException) as exc:
                code = getattr(exc, "response_code", None)
                retryable = code in RETRY_STATUSES or isinstance(exc, requests.RequestException)
                if not retryable or attempt >= self.merge_retries:
                    merged = self._merged_sha(iid)
                    if merged is not None:  # GitLab merged it but its answer was lost (e.g. a retry got 405)
                        return merged
                    raise _failure(f"Failed to merge merge request {iid}: HTTP {code or _status(exc)}", exc) from None
            attempt += 1
            time.sleep(self.retry_backoff * attempt)

    def _merged_sha(self, iid: int) -> str | None:
        """The merge commit when the MR is in fact merged, else None (also when GitLab cannot say)."""
        try:
            mr = self.project.mergerequests.get(iid)
        except (gitlab.GitlabError, requests.RequestException):
            return None
        if mr.state != "merged":
            return None
        return mr.merge_commit_sha or mr.squash_commit_sha or ""

    def delete_branch(self, branch: str) -> None:
        """Delete a branch through the API; a branch already gone is fine."""
        try:
            self.project.branches.delete(branch)
        except gitlab.GitlabDeleteError as exc:
            if exc.response_code != 404:
                raise _failure(f"Failed to delete branch {branch}: {_status(exc)}", exc) from None
        except (gitlab.GitlabError, requests.RequestException) as exc:
            raise _failure(f"Failed to delete branch {branch}: {_status(exc)}", exc) from None
