"""Git and GitLab steps (merge.md A2 step 9, B §7) as tasks over `indexflow.gitops` / `gitlab_mr`.

Each write returns what its undo needs; the flow records the undo in its compensation log.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow.errors import PublishError


@task(name="clone Git configs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def clone_configs(url: str, branch: str, dest: Path, token: str) -> Path:
    """Shallow clone of the OCP branch; the repo must hold `configs/` (IIB's layout)."""
    from indexflow import gitops

    gitops.clone_branch(url, branch, dest, token)
    if not (dest / "configs").is_dir():
        raise PublishError(f"Catalogs directory not found in {url} (branch {branch})")
    return dest


@task(name="commit and push feature branch", cache_policy=NO_CACHE)
def commit_and_push(repo_dir: Path, branch: str, url: str, token: str, message: str,
                    author: tuple[str, str]) -> str:
    """Commit everything on the feature branch and push it; returns the commit SHA Konflux keys on."""
    import git

    from indexflow import gitops

    repo = git.Repo(repo_dir)
    repo.git.checkout("-B", branch)
    sha = gitops.commit_all(repo, message, author[0], author[1])
    gitops.push_branch(repo, branch, url, token)
    return sha


@task(name="open merge request", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def open_merge_request(mrs, source_branch: str, target_branch: str, request_id: str):  # noqa: ANN001, ANN201
    return mrs.open(source_branch, target_branch, request_id)


@task(name="merge merge request", cache_policy=NO_CACHE)
def merge_merge_request(mrs, iid: int) -> str:  # noqa: ANN001 - gitlab_mr.MergeRequests retries itself
    return mrs.merge(iid)


@task(name="close merge request", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def close_merge_request(mrs, iid: int) -> None:  # noqa: ANN001
    mrs.close(iid)
