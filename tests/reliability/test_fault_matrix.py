"""Fault matrix: each remote step of a merge x each fault -> the run fails with a clear message (or
retries through) and the remote state is what it was before; a table of faults injected/recovered.

Faults are injected on the wire by the FaultProxy in front of the registry, git/GitLab and the
Kubernetes API, persistently (they outlast every client and task retry), so the run must give up
and roll back. Each cell runs the demo merge with overwrite on a private copy of the target index.

The CI matrix covers every step and every fault kind (each step with one kind, the kinds rotated
across steps) to fit the time budget; `INDEXFLOW_FULL_FAULT_MATRIX=1` runs the whole product.
A "hang" is a stall of a few seconds followed by a dropped connection: the clients' own timeouts
(30 s or more, not settable per run) would make a true hang cost minutes per cell. The full product
recovered every cell; a lost answer to the MR merge is confirmed by reading the MR back (it was the
one gap: the merge commit stayed while the rest was rolled back).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from flows.merge_index import merge_index_image
from indexflow.errors import IndexflowError
from indexflow.merge import plan
from indexflow.registry.refs import ImageRef
from sandbox.images import build_image, tar_gz
from sandbox.seed import BINARY_LAYER_FILES, INDEX_REPO
from tests.reliability.sandbox_session import BLOCK, remote_state

FAULTS = {"error": dict(action="status", status=503), "timeout": dict(action="hang", hang_seconds=3.0),
          "dropped": dict(action="drop"), "partial": dict(action="partial")}


@dataclass(frozen=True)
class Step:
    """A remote step as the wire sees it: which proxy, which requests."""

    name: str
    proxy: str
    path: str
    method: str | None = None


STEPS = [
    Step("resolve index images", "registry", r"^/v2/rh-osbs/iib-pub-pending/manifests/"),
    Step("pull index.db artifact", "registry", r"^/v2/index-db/blobs/", "GET"),
    Step("validate bundle pullspecs", "registry", r"^/v2/community-operator-pipeline-prod/.*/manifests/"),
    Step("clone the Git repository", "git", r"git-upload-pack$", "POST"),
    Step("push the branch", "git", r"git-receive-pack$", "POST"),
    Step("open the merge request", "git", r"/api/v4/projects/.*/merge_requests$", "POST"),
    Step("poll Konflux", "kube", r"/pipelineruns", "GET"),
    Step("copy the output image", "registry", r"^/v2/iib-build/manifests/", "PUT"),
    Step("push the index.db artifact", "registry", r"^/v2/index-db/manifests/", "PUT"),
    Step("overwrite the target index", "registry", r"^/v2/rh-osbs/iib-pub-pending/manifests/rel-", "PUT"),
    Step("merge the merge request", "git", r"/merge_requests/\d+/merge(\?|$)", "PUT"),
]
KINDS = list(FAULTS)


# Cells not recovered yet run in CI as strict xfails, so a fix shows up (the last one, a lost answer
# to the MR merge, is now confirmed by reading the MR back).
KNOWN_GAPS: dict[tuple[str, str], str] = {}  # (step, fault) -> why it is not recovered yet; none left


def cells() -> list:
    if os.environ.get("INDEXFLOW_FULL_FAULT_MATRIX"):
        chosen = list(itertools.product(STEPS, KINDS))
    else:
        chosen = [(step, KINDS[i % len(KINDS)]) for i, step in enumerate(STEPS)]
        chosen += [(step, kind) for step in STEPS for kind in KINDS if (step.name, kind) in KNOWN_GAPS]
    return [pytest.param(step, kind, id=f"{step.name.replace(' ', '-')}:{kind}",
                         marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[(step.name, kind)])]
                         if (step.name, kind) in KNOWN_GAPS else []) for step, kind in chosen]


TABLE: list[tuple[str, str, int, str]] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table():
    """Print the table once the module is done (pytest -s shows it; the lead's CI log keeps it)."""
    yield
    if TABLE:
        width = max(len(r[0]) for r in TABLE)
        lines = [f"{'step':<{width}}  fault     injected  outcome"]
        lines += [f"{s:<{width}}  {k:<8}  {n:>8}  {o}" for s, k, n, o in TABLE]
        recovered = sum(1 for r in TABLE if r[3].startswith("recovered"))
        lines.append(f"faults injected in {len(TABLE)} cells, cleanly recovered: {recovered}/{len(TABLE)}")
        print("\n" + "\n".join(lines))


def private_target(env, tag: str) -> str:  # noqa: ANN001
    """A copy of the seeded target index (image + index.db artifact) under its own tag."""
    seed = env.seeded
    ref = ImageRef.parse(f"{env.registry_host}/{INDEX_REPO}:{tag}")
    labels = {plan.VERSION_LABEL: "v4.17", plan.SCOPE_LABEL: "prod"}
    build_image(env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)], labels)
    pulled = env.artifacts.pull(env.artifacts.canonical_ref(seed.target_index))
    env.artifacts.push(env.artifacts.canonical_ref(str(ref)), pulled.path, {"request_id": "seed"})
    return str(ref)


@pytest.mark.parametrize("step,kind", cells())
def test_fault_leaves_no_trace(step, kind, proxied_env, clean_proxies, tmp_path):
    env = proxied_env
    cell = f"rel-{abs(hash((step.name, kind))) % 10**8}"
    target = private_target(env, cell)
    shutil.rmtree(os.environ["INDEXFLOW_CACHE_DIR"], ignore_errors=True)  # cold: every read goes out
    before = remote_state(env)
    fault = env.proxies[step.proxy].add_fault(path=step.path, method=step.method, times=10**6, **FAULTS[kind])
    t = time.monotonic()
    state = merge_index_image(source_from_index=env.seeded.source_index, target_index=target,
                              deprecation_list=env.seeded.deprecation_list, overwrite_target_index=True,
                              overwrite_target_index_token=SecretStr("demo:demo"), ignore_bundle_ocp_version=True,
                              request_id=cell, settings_block=BLOCK, return_state=True)
    env.proxies[step.proxy].clear()
    outcome = _judge(state, env, before, fault.injected, time.monotonic() - t)
    TABLE.append((step.name, kind, fault.injected, outcome))
    assert fault.injected > 0, f"{step.name}: the fault never fired (pattern {step.path!r})"
    assert outcome.startswith("recovered"), outcome


def _judge(state, env, before, injected: int, secs: float) -> str:  # noqa: ANN001
    """'recovered: ...' when the run failed with one clear line and left no trace (or retried through)."""
    if state.is_completed():
        return f"recovered: retried through ({secs:.0f}s)"
    error = state.result(raise_on_failure=False)
    if not isinstance(error, IndexflowError):
        return f"NOT recovered: not a user-facing error: {error!r}"
    text = str(error)
    if "\n" in text.strip() or "Traceback" in text:
        return f"NOT recovered: message is not one line: {text!r}"
    try:
        remote_state(env).assert_same(before)
    except AssertionError as exc:
        return f"NOT recovered: remote state changed: {exc}"
    return f"recovered: failed cleanly in {secs:.0f}s: {text[:160]}"
