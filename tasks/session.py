"""Everything a merge run talks to, built once from the MergeSettings block and its credential blocks.

Secrets are read from blocks here and handed to clients in memory; they are never logged, returned
or written to disk (the registry Secret goes through `blocks.registry_auth`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import gitlab
from prefect.runtime import flow_run
from prefect_gitlab import GitLabCredentials
from prefect_kubernetes.credentials import KubernetesCredentials

from blocks.registry_auth import registry_auth
from blocks.settings import MergeSettings
from indexflow import redact, workdirs
from indexflow.gitlab_mr import MergeRequests, gitlab_client
from indexflow.merge.params import MergeRequest
from indexflow.registry.artifacts import IndexDbArtifacts
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef


@dataclass
class Session:
    settings: MergeSettings
    workdir: Path
    registry: RegistryClient  # IIB's credentials
    target_registry: RegistryClient  # also carries the overwrite token (the same client without one)
    artifacts: IndexDbArtifacts
    gitlab: gitlab.Gitlab
    git_token: str = field(repr=False)
    kubernetes: KubernetesCredentials

    def merge_requests(self, repo_url: str) -> MergeRequests:
        return MergeRequests(self.gitlab, repo_url)

    def close(self) -> None:
        for client in {id(c): c for c in (self.registry, self.target_registry)}.values():
            client.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def open_session(settings: MergeSettings, req: MergeRequest) -> Session:
    """Clients for the registry (with the overwrite token for the target), artifacts, GitLab, Konflux."""
    workdir = workdirs.make(req.request_id, flow_run.get_id())  # dead runs' dirs: orphans.tidy() at the merge's start
    auth = registry_auth(settings.registry_auth_secret)
    kw = dict(insecure=tuple(settings.insecure_registries), max_connections=settings.registry_concurrency * 2)
    registry = RegistryClient(auth=auth, **kw)
    target_registry = registry
    if req.overwrite_target_index_token and req.target_index:
        target_auth = auth.with_token(ImageRef.parse(req.target_index), req.overwrite_target_index_token)
        target_registry = RegistryClient(auth=target_auth, **kw)
    artifacts = IndexDbArtifacts(registry, settings.index_db_artifact_registry,
                                 template=settings.index_db_artifact_template,
                                 tag_template=settings.index_db_artifact_tag_template)
    gl_creds = GitLabCredentials.load(settings.gitlab_credentials)
    git_token = gl_creds.token.get_secret_value()
    kubernetes = KubernetesCredentials.load(settings.kubernetes_credentials)
    _remember_secrets(git_token, kubernetes)
    return Session(settings, workdir, registry, target_registry, artifacts, gitlab_client(gl_creds.url, git_token),
                   git_token, kubernetes)


def _remember_secrets(git_token: str, kubernetes: KubernetesCredentials) -> None:
    """The run's redaction step learns the GitLab token and the kubeconfig's credentials."""
    redact.remember(git_token)
    cluster = getattr(kubernetes, "cluster_config", None)
    redact.remember_mapping_strings(getattr(cluster, "config", None), redact.KUBECONFIG_SECRET_KEYS)
