"""merge_index_image: IIB's merge-index-image as a Prefect flow (spec/merge.md Part A).

Read top to bottom, this file is the A2 story: prepare, pull index.dbs, validate pullspecs, diff,
add, deprecate, migrate + merge + validate the FBC, then (unless dry run) publish through Git,
Konflux and the registry under a per-target lock, rolling back every remote write on failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.blocks.system import Secret
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.settings import MergeSettings
from blocks.tokens import REFERENCE_ONLY, local_overwrite_token, overwrite_token
from indexflow import redact
from indexflow.errors import IndexflowError, PublishError
from indexflow.gitlab_mr import MergeRequests, resolve_git_url
from indexflow.merge import diff as merge_diff
from indexflow.merge import guard, plan
from indexflow.merge.params import MergeRequest, validate_request
from indexflow.registry.client import RegistryClient
from tasks import artifacts as art
from indexflow.journal import CLOSING, COMPLETED, MERGING, PUBLISHING, TAG, Record
from tasks import catalog, git_mr, iib_record, orphans, outputs, recovery, registry_checks, report
from tasks.konflux_wait import wait_for_build
from tasks.lock import HeldLock, target_lock
from tasks.prepare import Prepared, resolve_indexes
from tasks.rollback import Compensations, failure_message, rollback, undo_record
from tasks.session import Session, open_session


def run_name() -> str:
    """`merge-<request>-<target tag>`: the run's name says which request and which index it merges."""
    params = flow_run.get_parameters()
    index = params.get("target_index") or params.get("source_from_index") or ""
    last = index.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last and "@" not in last else last.split("@")[0] or "index"
    return f"merge-{params.get('request_id') or default_request_id()}-{tag}"


# persist_result + json: the result dict lands in the result storage `indexflow setup` makes the
# server's default, so `prefect flow-run inspect` and the REST API point at it from the final state
@flow(name="merge-index-image", task_runner=ThreadPoolTaskRunner(max_workers=registry_checks.CHUNKS_IN_FLIGHT),
      validate_parameters=True, flow_run_name=run_name, persist_result=True, result_serializer="json",
      log_prints=False, on_crashed=[recovery.repair_hook], on_cancellation=[recovery.repair_hook])
def merge_index_image(
    source_from_index: str,
    target_index: str | None = None,
    deprecation_list: list[str] | None = None,
    binary_image: str | None = None,
    overwrite_target_index: bool = False,
    overwrite_target_index_token_secret: Annotated[Secret | None, Field(json_schema_extra=REFERENCE_ONLY)] = None,
    distribution_scope: str | None = None,
    build_tags: list[str] | None = None,
    graph_update_mode: str | None = None,
    ignore_bundle_ocp_version: bool = False,
    dry_run: bool = False,
    request_id: str | None = None,
    settings_block: str = "indexflow",
    graph_update_modes: dict[str, str] | None = None,
    default_head_policy: str | None = None,
    max_removed_share: Annotated[float, Field(ge=0, le=1)] | None = None,
) -> dict[str, Any]:
    """Merge the bundles of `target_index` missing from `source_from_index` into it (IIB semantics).

    A user or remote error ends the run Failed with one sentence (no traceback); bugs still raise.
    The overwrite token is never a parameter (Prefect stores parameters in plain text): a deployment
    run references a Secret block, `indexflow merge` hands the token over in memory (blocks/tokens.py).

    Args:
        source_from_index: Index image whose catalog is the base of the merge (IIB `source_from_index`).
        target_index: Index image whose bundles missing from the source are added (IIB `target_index`).
        deprecation_list: Bundle pullspecs to deprecate in the merged catalog (IIB `deprecation_list`).
        binary_image: The opm binary image; may be left out when the settings have a binary_image_config.
        overwrite_target_index: Copy the result over `target_index` and merge the MR (needs a token).
        overwrite_target_index_token_secret: The Secret block holding `user:password` for the target's
            registry (IIB `overwrite_target_index_token`); only a reference to a saved block is accepted.
        distribution_scope: prod, stage or dev; defaults to the source's label (IIB `distribution_scope`).
        build_tags: Extra tags pushed for the output image (IIB `build_tags`).
        graph_update_mode: replaces, semver or semver-skippatch (IIB `graph_update_mode`; allow-listed indexes).
        ignore_bundle_ocp_version: Keep bundles without an OCP label; only for indexes on the settings'
            no_ocp_label_allow_list (IIB `ignore_bundle_ocp_version`).
        dry_run: Do everything local (validate, diff, build the catalog) and publish nothing.
        request_id: Id used in the branch, tags and artifacts; defaults to the start of the run id.
        settings_block: Name of the Indexflow Merge Settings block to use.
        graph_update_modes: package -> graph mode (replaces, semver, semver-skippatch) its bundles are added
            in; wins over the settings' graph_update_modes per package (indexflow).
        default_head_policy: "fail" (IIB) or "remove-package" when an OCP-incompatible bundle heads its
            package's default channel; defaults to the settings' default_head_policy (indexflow).
        max_removed_share: Destructive-merge guard for this run: the share (0-1) of the target's bundles
            the merge may drop or mark invalid; defaults to the settings' max_removed_share (0.1).
    """
    redact.install_log_filter()
    try:
        settings = with_overrides(MergeSettings.load(settings_block), max_removed_share=max_removed_share)
        token = overwrite_token(overwrite_target_index_token_secret)
        redact.remember(token, (token or "").partition(":")[2])
        req = validate_request(
            {"source_from_index": source_from_index, "target_index": target_index,
             "deprecation_list": deprecation_list, "binary_image": binary_image,
             "overwrite_target_index": overwrite_target_index, "overwrite_target_index_token": token,
             "distribution_scope": distribution_scope, "build_tags": build_tags,
             "graph_update_mode": graph_update_mode, "ignore_bundle_ocp_version": ignore_bundle_ocp_version,
             "dry_run": dry_run, "request_id": request_id, "graph_update_modes": graph_update_modes,
             "default_head_policy": default_head_policy},
            request_id=default_request_id(), binary_image_configured=bool(settings.binary_image_config),
            graph_mode_options=settings.graph_mode_options,
            graph_mode_allow_list=settings.graph_mode_index_allow_list)
        result = run_request(settings, req)
        return Completed(message=result["state_reason"], data=result)  # the final reason, with the state
    except IndexflowError as exc:
        exc.args = (redact.redact(str(exc)),)  # a secret learnt after the error was made
        get_run_logger().error("state_reason: %s", exc)
        return Failed(message=str(exc), data=exc)
    except Exception as exc:  # a bug: its traceback stays, a secret in its message does not
        exc.args = tuple(redact.redact(a) if isinstance(a, str) else a for a in exc.args)
        raise


def run_request(settings: MergeSettings, req: MergeRequest) -> dict[str, Any]:
    """The A2 story for a validated request (resumed from its journal when it ran before)."""
    story = report.MergeStory(req.request_id, target=req.effective_index,
                              total=report.total_steps(req.dry_run, req.overwrite_target_index))
    story.start()
    story.reason(report.PREPARING)
    orphans.tidy()  # runs that died on this host before publishing: Crashed, temp dirs removed
    session = open_session(settings, req)
    try:
        if not req.dry_run and (earlier := recovery.resume(session, req.request_id)) is not None:
            story.finish()  # completed by an earlier attempt: its outputs, nothing written again
            return earlier
        built = build_catalog(session, req, story)
        if req.dry_run:
            return finish(story, req, built, published=None)
        with target_lock(built.lock_key, settings.lock_timeout_seconds) as lock:
            published = publish(session, req, story, built, lock)
        return finish(story, req, built, published)
    except IndexflowError as exc:
        report.failure_summary(story, str(exc))
        raise
    finally:
        story.close()
        session.close()


@dataclass(frozen=True)
class Built:
    """What the local part of the merge produced (steps 1-8): all publish needs, nothing remote yet."""

    prep: Prepared
    diff: merge_diff.MergeDiff
    db: Path  # the merged index.db (a per-run copy)
    repo: Path  # the Git checkout whose configs/ holds the validated catalog
    git_url: str
    artifact_refs: plan.ArtifactRefs
    operators: list[str]  # package name per bundle left in the db (IIB's completion message)
    bundles_in_db: int
    index_db_pulls: list[str]  # state of each index.db pull task: "Cached" when nothing was downloaded
    lock_key: tuple[str, str, str]  # what two merges must not share (plan.lock_parts)
    removed_packages: tuple[str, ...] = ()  # by the remove-package policy (OCP-incompatible default head)

    def summary(self, req: MergeRequest) -> dict[str, Any]:
        """The request's counts, kept in the journal with its outputs (a re-run returns them)."""
        return {"request_id": req.request_id, "dry_run": req.dry_run, "missing": len(self.diff.missing),
                "invalid": len(self.diff.invalid), "deprecated": len(self.diff.to_deprecate),
                "bundles_in_db": self.bundles_in_db, "packages_touched": self.diff.packages_touched(),
                "index_db_pulls": self.index_db_pulls, "removed_packages": list(self.removed_packages),
                "state_reason": self.completion_reason()}

    def completion_reason(self) -> str:
        """IIB's state reason of a completed merge."""
        return report.operators_line(self.operators)


def build_catalog(s: Session, req: MergeRequest, story: report.MergeStory) -> Built:
    """A2 steps 1-8: everything up to a validated catalog in a local Git checkout; nothing remote."""
    cfg = s.settings
    with story.step(report.RESOLVING):
        prep: Prepared = resolve_indexes(s.registry, s.target_registry, req, cfg.binary_image_config,
                                         cfg.binary_image_less_arches_allowed_versions)
        story.later(lambda: iib_record.record_resolved(req.request_id, prep))  # read by the IIB endpoint
    story.reason(f"Building the index image for the following arches: {', '.join(sorted(prep.arches))}")
    git_url = resolve_git_url(req.effective_index, cfg.index_to_gitlab_push_map)
    with story.step(report.CLONING):
        repo = git_mr.clone_configs(git_url, prep.ocp_version, s.workdir / "git", s.git_token)
    with story.step("Pulling index.db artifacts"):
        source_ref = s.artifacts.canonical_ref(req.source_from_index)
        target_ref = s.artifacts.canonical_ref(req.target_index) if req.target_index else None
        source_db, source_pull = art.cached_index_db(s.artifacts, source_ref)
        target_db, target_pull = art.cached_index_db(s.artifacts, target_ref) if target_ref else (None, None)
        source_bundles = catalog.read_bundles(source_db, source_ref)
        target_bundles = catalog.read_bundles(target_db, target_ref) if target_db else []
        target_tails = catalog.read_bundles(target_db, target_ref, deprecated=True) if target_db else []
    with story.step(report.VALIDATING):
        registry_checks.validate_all(s.registry, [b.bundlePath for b in [*source_bundles, *target_bundles, *target_tails]],
                                     cfg.validation_chunks, cfg.registry_concurrency, story)
    with story.step(report.FINDING_MISSING):
        labels, resolved_deprecations = registry_checks.labels_and_deprecations(
            s.registry, source_bundles, [*target_bundles, *target_tails], req.deprecation_list, cfg.validation_chunks,
            cfg.registry_concurrency)
        allow = merge_diff.allow_no_ocp_version(req.ignore_bundle_ocp_version, cfg.no_ocp_label_allow_list,
                                                prep.target.resolved if prep.target else None,
                                                prep.source.resolved)
        result = merge_diff.plan_diff(source_bundles, target_bundles, labels, prep.ocp_version, allow,
                                      resolved_deprecations, target_tails)
        story.found(diff=result, dry_run=req.dry_run, **report.found_facts(result, None))
        report.diff_artifacts(story, result, "dry run: not published" if req.dry_run else "")
        if req.deprecation_list and not result.deprecation_matches:
            get_run_logger().warning("Deprecation list was set but no bundles were found for deprecation.")
    db = catalog.working_copy(source_db, s.workdir / "db" / "index.db")
    with story.step(report.ADDING):
        catalog.add_missing_bundles(db, [b.bundlePath for b in result.missing], req.mode, s.registry,
                                    cfg.registry_concurrency,
                                    modes={**cfg.graph_update_modes, **req.graph_update_modes},
                                    release_order=cfg.add_in_release_order)
    if cfg.add_in_release_order:  # a bundle a later release left off its channel is not there to deprecate
        result = merge_diff.listed_only(result, catalog.read_bundles(db), [*source_bundles, *target_bundles,
                                                                            *target_tails])
    with story.step(report.DEPRECATING):
        policy = req.default_head_policy or cfg.default_head_policy
        removable = result.invalid_paths() if policy == "remove-package" else set()
        removed_packages: list[str] = []
        for chunk in merge_diff.chunks(result.to_deprecate, cfg.deprecate_bundles_limit):
            removed_packages += catalog.deprecate_chunk(db, chunk, [p for p in chunk if p in removable],
                                                        db_name=source_ref)
    bundles_in_db = catalog.read_bundles(db)
    check_removals(story, cfg, target_bundles, bundles_in_db, result, labels)
    with story.step(report.MIGRATING):
        from_db = catalog.migrate_to_fbc(db, s.workdir / "from_db", plan.migrate_level(prep.ocp_version))
    with story.step(report.VALIDATING_FBC):
        deprecated_pkgs = packages_of(result.to_deprecate, [*source_bundles, *target_bundles, *target_tails])
        catalog.merge_into_configs(from_db, repo / "configs", deprecated_pkgs)
        catalog.validate_catalog(repo / "configs")
    with story.step(report.METADATA):
        catalog.write_build_metadata(repo, plan.build_metadata(
            plan.opm_version_for(prep.ocp_version, cfg.ocp_opm_mapping), prep.ocp_version, prep.scope,
            prep.binary_image_resolved, req.request_id, prep.arches))
    refs = plan.artifact_refs(req.effective_index, cfg.index_db_artifact_registry, req.request_id,
                              cfg.index_db_artifact_template, cfg.index_db_artifact_tag_template)
    return Built(prep=prep, diff=result, db=db, repo=repo, git_url=git_url, artifact_refs=refs,
                 operators=[b.packageName for b in bundles_in_db], bundles_in_db=len(bundles_in_db),
                 index_db_pulls=[p for p in (source_pull, target_pull) if p],
                 lock_key=plan.lock_parts(git_url, prep.ocp_version, req.effective_index, refs.canonical),
                 removed_packages=tuple(removed_packages))


def publish(s: Session, req: MergeRequest, story: report.MergeStory, built: Built, lock: HeldLock) -> dict[str, Any]:
    """A2 steps 9-11: MR, Konflux build, outputs, overwrite, artifacts, MR merge/close; undo on failure.

    Each remote write is journaled first, with the state before it, so a failure at any point (even
    one whose outcome was never learned, even a killed process) rolls back to exactly the state before
    the run; once everything but the MR merge is written, the journal says so (rolled forward then).
    """
    cfg, prep = s.settings, built.prep
    mrs = s.merge_requests(built.git_url)
    branch = plan.branch_name(cfg.environment_name, req.request_id, prep.ocp_version)
    pullspecs = plan.output_pullspecs(cfg.iib_registry, req.request_id, req.build_tags, cfg.image_push_template)
    undo = Compensations(recovery.new_journal(s, req, built.git_url, lock, branch), lock.check)
    try:
        with story.step(report.COMMITTING):
            undo.record(git_mr.branch_record(built.git_url, branch, s.git_token))
            sha = git_mr.commit_and_push(built.repo, branch, built.git_url, s.git_token,
                                         plan.commit_message(req.request_id, [b.bundlePath for b in built.diff.missing]),
                                         (cfg.git_author_name, cfg.git_author_email))
            undo.record(git_mr.mr_record(mrs, branch))
            mr = git_mr.open_merge_request(mrs, branch, prep.ocp_version, req.request_id)
            undo.advance(PUBLISHING, mr_iid=mr.iid)
        with story.step(report.WAITING):
            image_url = wait_for_build(s.kubernetes, cfg.konflux_namespace, sha, cfg.konflux_poll_interval,
                                       cfg.konflux_pipeline_timeout)
        with story.step(report.COPYING):
            digests = [write_tag(undo, s.registry, spec,
                                 lambda spec=spec: outputs.copy_image(s.registry, image_url, spec))
                       for spec in pullspecs]
        if req.overwrite_target_index:
            with story.step(f"Overwriting the index image {req.target_index} with {pullspecs[0]}"):
                write_tag(undo, s.target_registry, req.target_index, lambda: outputs.overwrite_target(
                    s.target_registry, pullspecs[0], req.target_index, prep.target.digest), target=True)
        with story.step(report.PUSHING_DB):
            refs = [built.artifact_refs.per_request]
            if req.overwrite_target_index:
                refs.append(built.artifact_refs.canonical)
            annotations = {"request_id": req.request_id, "request_type": "merge",
                           "operators": ",".join(dict.fromkeys(built.operators))}
            for ref in refs:
                write_tag(undo, s.registry, ref,
                          lambda ref=ref: art.push_index_db(s.artifacts, ref, built.db, annotations))
        published = {"output_pullspecs": pullspecs,
                     "outputs": [{"pullspec": p, "digest": d} for p, d in zip(pullspecs, digests)],
                     "mr_url": mr.web_url, "commit": sha, "image_url": image_url,
                     "index_db": refs}
        undo.advance(MERGING if req.overwrite_target_index else CLOSING, result=built.summary(req) | published)
        if req.overwrite_target_index:
            git_mr.merge_merge_request(mrs, mr.iid)
            mr_state = "merged"
    except BaseException as exc:
        undone, failed = rollback(undo.journal, lambda rec: undo_record(rec, recovery.remotes(s, built.git_url)))
        story.undone, story.not_undone = undone, failed
        if not isinstance(exc, Exception):
            raise
        raise PublishError(failure_message(story.current, exc, undone, failed)) from exc
    if not req.overwrite_target_index:
        mr_state = close_unmerged(mrs, mr.iid, built.git_url, branch, s.git_token)
    published["mr_state"] = mr_state
    undo.advance(COMPLETED, result=built.summary(req) | published)
    return published


def close_unmerged(mrs: MergeRequests, iid: int, git_url: str, branch: str, token: str) -> str:
    """Without overwrite the MR only carried the build: close it and drop its branch. Everything is
    published by now, so (like IIB) a failure here is a warning, not a reason to undo the merge."""
    try:
        git_mr.close_merge_request(mrs, iid)
        git_mr.delete_branch(git_url, branch, token)
    except IndexflowError as exc:
        get_run_logger().warning("could not close merge request !%s or delete %s: %s", iid, branch, exc)
        return f"left open: {exc}"
    return "closed"


def write_tag(undo: Compensations, client: RegistryClient, pullspec: str, write: Callable[[], str],
              target: bool = False) -> str:
    """Journal the tag's digest before the write (how to put `pullspec` back), then write it; returns what
    the write returns (a digest)."""
    undo.record(Record(TAG, pullspec, outputs.current_digest(client, pullspec), target_registry=target))
    return write()


def finish(story: report.MergeStory, req: MergeRequest, built: Built, published: dict | None) -> dict[str, Any]:
    """The A3 result: summary artifacts and the result as data (`state_reason`: IIB's final reason, the
    operator list cut to its first names; the flow ends Completed with it as the message)."""
    reason = built.completion_reason()
    story.finish(reason)
    result = {"request_id": req.request_id, "dry_run": req.dry_run, "flow_run_id": str(flow_run.get_id()),
              **{k: v for k, v in story.facts.items() if k not in ("diff", "dry_run")},
              "bundles_in_db": built.bundles_in_db, "index_db_pulls": built.index_db_pulls,
              "removed_packages": list(built.removed_packages),
              "timings": {name: round(secs, 3) for name, secs in story.timings},
              "seconds": round(sum(secs for _, secs in story.timings), 3), **(published or {})}
    result["state_reason"] = reason
    report.publish_summary(story, result)
    get_run_logger().info("state_reason: %s", reason)
    result["lines"] = report.result_lines(result)
    return result


def with_overrides(settings: MergeSettings, **overrides: Any) -> MergeSettings:
    """Per-run parameters that override a setting of the block (None: keep the block's value)."""
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def check_removals(story: report.MergeStory, settings: MergeSettings, target_bundles: list, merged: list,
                   diff: merge_diff.MergeDiff, labels: dict[str, str | None]) -> None:
    """The destructive-merge guard, before anything remote: its numbers go to the summary either way."""
    removals = guard.check_removals(target_bundles, merged, diff.invalid, labels, settings.max_removed_share)
    story.found(removals=removals.as_dict())
    guard.enforce(removals, settings._block_document_name or "indexflow")


def packages_of(paths: list[str], records: list) -> list[str]:
    """Package names of the deprecated bundles (IIB reads them from bundle labels; the db has them)."""
    by_path = {r.bundlePath: r.packageName for r in records}
    return sorted({by_path[p] for p in paths if p in by_path})


def default_request_id() -> str:
    """A short id from the flow run (outside a run: random), usable in branch and tag names."""
    run_id = flow_run.get_id()
    return (str(run_id) if run_id else uuid.uuid4().hex)[:8]


def run_merge(overwrite_target_index_token: str | None = None, **params: Any) -> dict[str, Any]:
    """Entry point of `indexflow merge`: run the flow in this process; a failed run ends in its
    one-sentence error. The token reaches the flow in memory, never as a run parameter."""
    with local_overwrite_token(overwrite_target_index_token):
        return merge_index_image(**params)
