"""`MergeSettings`: the operator configuration IIB keeps in worker/API config (merge.md B §11).

Only names of credential blocks live here; the secrets themselves stay in Secret /
GitLabCredentials / KubernetesCredentials blocks so this block can be shown and logged freely.
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from blocks.iib_api_settings import IibApiSettings

DEFAULT_OPM_MAPPING = {
    **{f"v4.{m}": "opm-v1.26.4" for m in range(5, 17)},
    "v4.17": "opm-v1.40.0", "v4.18": "opm-v1.44.0", "v4.19": "opm-v1.48.0",
    "v4.20": "opm-v1.50.0", "v4.21": "opm-v1.50.0", "v4.22": "opm-v1.61.0",
}


class MergeSettings(Block):
    """Where a merge writes and how it talks to the registry, Git, GitLab and Konflux."""

    _block_type_name = "Indexflow Merge Settings"
    _block_type_slug = "indexflow-merge-settings"

    # outputs (iib_registry, iib_image_push_template)
    iib_registry: str = Field(description="Registry that receives the built index images")
    image_push_template: str = "{registry}/iib-build:{request_id}"
    # binary image (IIB_BINARY_IMAGE_CONFIG, IIB_BINARY_IMAGE_LESS_ARCHES_ALLOWED_VERSIONS)
    binary_image_config: dict[str, dict[str, str]] = Field(default_factory=dict)
    binary_image_less_arches_allowed_versions: list[str] = Field(default_factory=list)
    ocp_opm_mapping: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_OPM_MAPPING))
    # Git (IIB_INDEX_TO_GITLAB_PUSH_MAP) and the commit identity IIB leaves to the environment
    index_to_gitlab_push_map: dict[str, str] = Field(default_factory=dict)
    git_author_name: str = "indexflow"
    git_author_email: str = "indexflow@localhost"
    environment_name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")
    # index.db artifacts
    index_db_artifact_registry: str
    index_db_artifact_template: str = "{registry}/index-db:{tag}"
    index_db_artifact_tag_template: str = "{image_name}-{tag}"
    # Konflux
    konflux_namespace: str = Field(min_length=1)
    konflux_poll_interval: float = 30.0
    konflux_pipeline_timeout: float = 1800.0
    # catalog and policy
    deprecate_bundles_limit: int = 200
    no_ocp_label_allow_list: list[str] = Field(default_factory=list)
    graph_mode_options: list[str] = Field(default_factory=lambda: ["replaces", "semver", "semver-skippatch"])
    graph_mode_index_allow_list: list[str] = Field(default_factory=list)
    graph_update_modes: dict[str, Literal["replaces", "semver", "semver-skippatch"]] = Field(
        default_factory=dict, description="package -> graph mode its bundles are added in (the catalog "
        "pipeline's ci.yaml updateGraph); a request's graph_update_modes wins per package")
    add_in_release_order: bool = Field(
        default=False, description="add the missing bundles as the catalog's pipeline released them (per "
        "package in version order, one opm add each) instead of IIB's single opm registry add")
    default_head_policy: Literal["fail", "remove-package"] = Field(
        default="fail", description="an OCP-incompatible bundle heading its package's default channel: fail "
        "as IIB does, or remove the package (every channel head deprecated), listed in the summary")
    # parallelism: tens of task runs, each with many concurrent requests on one pooled client
    registry_concurrency: int = 32
    validation_chunks: int = 16
    insecure_registries: list[str] = Field(default_factory=list, description="host:port served over plain HTTP")
    lock_timeout_seconds: float = 3600.0
    # credential block names
    registry_auth_secret: str | None = Field(default=None, description="Secret block: docker config.json text")
    gitlab_credentials: str = Field(description="GitLabCredentials block name (API and git push token)")
    kubernetes_credentials: str = Field(description="KubernetesCredentials block name of the Konflux cluster")
    # the IIB-compatible HTTP service (`indexflow iib-api`): TLS, login, privileges, ids
    iib_api: IibApiSettings = Field(default_factory=IibApiSettings,
                                    description="indexflow iib-api: TLS, authentication, privileged users, id offset")
