"""Re-runs on the sandbox: the nightly case (a new request whose target already holds an earlier merge
of the same source) completes with the same catalog, and a re-run of a completed request id resumes
from its journal: it ends Completed with the same outputs and writes nothing remote."""

from __future__ import annotations

from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from tests.reliability.sandbox_session import BLOCK, remote_state, remote_writes, reset_request_logs
from tests.reliability.test_fault_matrix import private_target

OUTPUTS = ("output_pullspecs", "mr_url", "mr_state", "commit", "image_url", "index_db", "bundles_in_db")


def _merge(env, target: str, request_id: str):  # noqa: ANN001, ANN202
    with local_overwrite_token("demo:demo"):
        return merge_index_image(source_from_index=env.seeded.source_index, target_index=target,
                                 deprecation_list=env.seeded.deprecation_list, overwrite_target_index=True,
                                 ignore_bundle_ocp_version=True, build_tags=["nightly"], request_id=request_id,
                                 settings_block=BLOCK, return_state=True)


def test_nightly_merge_of_an_unchanged_source_completes_every_night(proxied_env, clean_proxies):
    env = proxied_env
    target = private_target(env, "nightly")
    first = _merge(env, target, "night-1")
    assert first.is_completed(), first.message
    second = _merge(env, target, "night-2")
    assert second.is_completed(), second.message  # was: replaces nonexistent bundle annotationlab.v4.8.5
    a, b = first.result(), second.result()
    assert b["bundles_in_db"] == a["bundles_in_db"] and b["mr_state"] == "merged"
    # the second night's canonical index.db holds exactly the first night's bundles
    from indexflow.catalog.db import list_bundles

    def bundles(ref: str) -> set[str]:
        return {x.bundlePath for x in list_bundles(env.artifacts.pull(ref).path)}

    assert bundles(a["index_db"][0]) == bundles(b["index_db"][0]) == bundles(b["index_db"][1])


def test_rerun_of_a_completed_request_resumes_and_writes_nothing(proxied_env, clean_proxies):
    env = proxied_env
    target = private_target(env, "rerun")
    first = _merge(env, target, "rerun-1")
    assert first.is_completed(), first.message
    before = remote_state(env)
    reset_request_logs(env)
    again = _merge(env, target, "rerun-1")
    assert again.is_completed(), again.message
    assert remote_writes(env) == []
    remote_state(env).assert_same(before)
    assert {k: again.result()[k] for k in OUTPUTS} == {k: first.result()[k] for k in OUTPUTS}
