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
    iib_registry: str = Field(description="Registry that receives the built index images (IIB iib_registry)")
    image_push_template: str = Field(
        default="{registry}/iib-build:{request_id}",
        description="Output pullspec per request and build tag (IIB iib_image_push_template)")
    # binary image (IIB_BINARY_IMAGE_CONFIG, IIB_BINARY_IMAGE_LESS_ARCHES_ALLOWED_VERSIONS)
    binary_image_config: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="distribution scope -> OCP version -> opm binary image, used when a request gives no "
                    "binary_image (IIB IIB_BINARY_IMAGE_CONFIG)")
    binary_image_less_arches_allowed_versions: list[str] = Field(
        default_factory=list,
        description="OCP versions whose binary image may cover fewer arches than the index "
                    "(IIB IIB_BINARY_IMAGE_LESS_ARCHES_ALLOWED_VERSIONS)")
    ocp_opm_mapping: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_OPM_MAPPING),
        description="OCP version -> opm release whose behaviour the catalog engine follows, e.g. the migrate "
                    "level (IIB iib_ocp_opm_mapping)")
    # Git (IIB_INDEX_TO_GITLAB_PUSH_MAP) and the commit identity IIB leaves to the environment
    index_to_gitlab_push_map: dict[str, str] = Field(
        default_factory=dict,
        description="index repository (no tag) -> HTTPS URL of its GitLab configs repository "
                    "(IIB IIB_INDEX_TO_GITLAB_PUSH_MAP)")
    git_author_name: str = Field(default="indexflow", description="Author of the catalog commits (IIB: the "
                                 "worker's git config)")
    git_author_email: str = Field(default="indexflow@localhost", description="Author email of the catalog commits")
    environment_name: str | None = Field(
        default=None, pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$",
        description="Part of the feature branch name iib-<environment>-request-<id>-<branch> "
                    "(IIB iib_environment_name)")
    # index.db artifacts
    index_db_artifact_registry: str = Field(
        description="Registry of the index.db ORAS artifacts (IIB iib_index_db_artifact_registry)")
    index_db_artifact_template: str = Field(
        default="{registry}/index-db:{tag}",
        description="Canonical index.db artifact ref (IIB iib_index_db_artifact_template)")
    index_db_artifact_tag_template: str = Field(
        default="{image_name}-{tag}",
        description="Tag of the canonical artifact (IIB iib_index_db_artifact_tag_template)")
    # Konflux
    konflux_namespace: str = Field(min_length=1, description="Namespace of the Konflux PipelineRuns "
                                                              "(IIB iib_konflux_namespace)")
    konflux_poll_interval: float = Field(default=30.0, description="Seconds between PipelineRun polls "
                                                                    "(IIB: 30 s)")
    konflux_pipeline_timeout: float = Field(default=1800.0, description="Seconds to wait for the PipelineRun "
                                                                         "(IIB iib_konflux_pipeline_timeout)")
    # catalog and policy
    deprecate_bundles_limit: int = Field(default=200, description="Bundles per deprecatetruncate call "
                                                                   "(IIB iib_deprecate_bundles_limit)")
    max_removed_share: float = Field(
        default=0.10, ge=0, le=1,
        description="Destructive-merge guard (indexflow only): the largest share of the target index's bundles "
                    "a merge may drop or mark invalid before it stops, before any remote write; 1 disables it")
    no_ocp_label_allow_list: list[str] = Field(
        default_factory=list,
        description="Index pullspec prefixes whose requests may set ignore_bundle_ocp_version: only there do "
                    "bundles without an OCP label stay valid (IIB iib_no_ocp_label_allow_list)")
    graph_mode_options: list[str] = Field(
        default_factory=lambda: ["replaces", "semver", "semver-skippatch"],
        description="Accepted graph_update_mode values (IIB IIB_GRAPH_MODE_OPTIONS)")
    graph_mode_index_allow_list: list[str] = Field(
        default_factory=list,
        description="Target indexes (exact pullspecs) on which graph_update_mode may be set "
                    "(IIB IIB_GRAPH_MODE_INDEX_ALLOW_LIST)")
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
    registry_concurrency: int = Field(default=32, description="Registry requests in flight per merge "
                                                               "(indexflow; IIB runs skopeo one by one)")
    validation_chunks: int = Field(default=16, description="Task runs the pullspec validation is split into "
                                                            "(indexflow)")
    insecure_registries: list[str] = Field(default_factory=list,
                                           description="host:port of registries served over plain HTTP")
    lock_timeout_seconds: float = Field(default=3600.0, description="How long a merge waits for another merge "
                                                                     "of the same target to finish (indexflow)")
    # credential block names
    registry_auth_secret: str | None = Field(default=None, description="Secret block: docker config.json text")
    gitlab_credentials: str = Field(description="GitLabCredentials block name (API and git push token)")
    kubernetes_credentials: str = Field(description="KubernetesCredentials block name of the Konflux cluster")
    # the IIB-compatible HTTP service (`indexflow iib-api`): TLS, login, privileges, ids
    iib_api: IibApiSettings = Field(default_factory=IibApiSettings,
                                    description="indexflow iib-api: TLS, authentication, privileged users, id offset")
