"""Git and GitLab steps (merge.md A2 step 9, B §7) as tasks over `indexflow.gitops` / `gitlab_mr`.

Each write is journaled with the state before it (`branch_record`, `mr_record`) before it happens.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import git
from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow import gitlab_mr, gitops
from indexflow.errors import PublishError
from indexflow.gitlab_mr import MergeRequests
from indexflow.journal import BRANCH, MR, Record
from indexflow.registry.artifacts import cache_root
from tasks.retry import transient_only


@task(name="clone Git configs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def clone_configs(url: str, branch: str, dest: Path, token: str) -> Path:
    """Shallow clone of the OCP branch (through this machine's mirror of `url`, see gitops.clone_branch);
    the repo must hold `configs/` (IIB's layout)."""
    gitops.clone_branch(url, branch, dest, token, mirror=git_mirror(url))
    if not (dest / "configs").is_dir():
        raise PublishError(f"Catalogs directory not found in {url} (branch {branch})")
    return dest


def git_mirror(url: str) -> Path:
    """Where this machine keeps its bare copy of the catalog repo at `url` (named by a hash of it)."""
    return cache_root() / "git" / hashlib.sha256(url.encode()).hexdigest()[:32]


@task(name="commit and push feature branch", cache_policy=NO_CACHE)
def commit_and_push(repo_dir: Path, branch: str, url: str, token: str, message: str,
                    author: tuple[str, str]) -> str:
    """Commit everything on the feature branch and push it; returns the commit SHA Konflux keys on."""
    repo = git.Repo(repo_dir)
    repo.git.checkout("-B", branch)
    sha = gitops.commit_all(repo, message, author[0], author[1])
    # forced: the branch is this request's own, and a run that crashed before its rollback may have
    # left it behind; the per-target lock rules out a concurrent run pushing the same branch
    gitops.push_branch(repo, branch, url, token, force=True)
    return sha


@task(name="open merge request", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def open_merge_request(mrs: MergeRequests, source_branch: str, target_branch: str, request_id: str) -> gitlab_mr.MR:
    return mrs.open(source_branch, target_branch, request_id)


@task(name="merge merge request", cache_policy=NO_CACHE)
def merge_merge_request(mrs: MergeRequests, iid: int) -> str:
    """No task retries: `MergeRequests.merge` retries itself, and asks GitLab whether a lost answer merged it."""
    return mrs.merge(iid)


@task(name="close merge request", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def close_merge_request(mrs: MergeRequests, iid: int) -> None:
    mrs.close(iid)


def branch_record(url: str, branch: str, token: str) -> Record:
    """Taken before the push: the feature branch's commit, if it existed (the undo deletes it only if not)."""
    return Record(BRANCH, branch, gitops.remote_branch_sha(url, branch, token))


def mr_record(mrs: MergeRequests, branch: str) -> Record:
    """Taken before opening: an MR already open from the branch (the undo closes one only if not)."""
    mr = mrs.find_open(branch)
    return Record(MR, branch, str(mr.iid) if mr else None)


@task(name="delete feature branch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def delete_branch(url: str, branch: str, token: str) -> None:
    """A closed MR's branch is of no further use (IIB leaves it behind; we tidy up)."""
    gitops.delete_remote_branch(url, branch, token)
