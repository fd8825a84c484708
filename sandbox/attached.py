"""A running sandbox seen from another process (`indexflow sandbox seed`): the stack's endpoints from its
`stack.json`, and the one write seeding needs (publishing Git branches) done over git's HTTP protocol.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

from indexflow.errors import IndexflowError


@dataclass
class AttachedStack:
    """The subset of `sandbox.stack.Stack` that `SandboxEnv` uses, for a stack running elsewhere."""

    state_dir: Path
    registry: SimpleNamespace  # host, url
    gitlab_url: str
    git_token: str
    kubeconfig_path: Path
    konflux_namespace: str
    git_base: str  # the git server's base URL (repositories are <base>/<project>.git)

    @classmethod
    def from_state(cls, state: dict) -> "AttachedStack":
        return cls(state_dir=Path(state["state_dir"]),
                   registry=SimpleNamespace(host=state["registry"]["host"], url=state["registry"]["url"]),
                   gitlab_url=state["gitlab"]["url"], git_token=state["gitlab"]["token"],
                   kubeconfig_path=Path(state["konflux"]["kubeconfig"]),
                   konflux_namespace=state["konflux"]["namespace"], git_base=state["gitlab"]["url"])

    def git_repo_url(self, project: str) -> str:
        return f"{self.git_base}/{project}.git"

    def publish_git_repo(self, project: str, source_repo: Path) -> str:
        """Push every branch of a local repo to the running git server (it creates the project on push)."""
        parts = urlsplit(self.git_repo_url(project))
        authed = urlunsplit(parts._replace(netloc=f"oauth2:{self.git_token}@{parts.netloc}"))
        done = subprocess.run(["git", "-C", str(source_repo), "push", "-q", "--force", authed,
                               "refs/heads/*:refs/heads/*"], capture_output=True, text=True)
        if done.returncode != 0:
            said = done.stderr.replace(self.git_token, "***").strip().splitlines()
            raise IndexflowError(f"could not push the seed branches to {self.git_repo_url(project)}: "
                                 f"{said[-1] if said else 'git failed'}")
        return self.git_repo_url(project)

    def down(self) -> None:
        """Not ours to stop: `indexflow sandbox down` does that."""
