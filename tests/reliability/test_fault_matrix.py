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

import httpx
import pytest

from blocks.tokens import local_overwrite_token
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
OCP_BRANCH = "v4.17"


def _db_layer(env, repo_tag: str) -> str | None:  # noqa: ANN001
    """The sqlite layer digest of an index.db artifact, read over plain HTTP (not our client)."""
    repo, tag = repo_tag.rsplit(":", 1)
    r = httpx.get(f"{env.stack.registry.url}/v2/{repo}/manifests/{tag}", timeout=10,
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return r.json()["layers"][0]["digest"] if r.status_code == 200 else None


def complete_result_problems(env, before, after, cell: str) -> list[str]:  # noqa: ANN001
    """How the remote state differs from the whole result of an overwrite merge of request `cell` on
    target tag `cell` (names written from spec A2/A3 here, not computed by the product): the output
    image `iib-build:<request>`, the target re-pointed to it, the canonical and the request's index.db
    artifacts holding the same new db, the OCP branch moved by one merged MR, nothing else touched."""
    output, target = f"iib-build:{cell}", f"{INDEX_REPO}:{cell}"
    canonical, own = f"index-db:iib-pub-pending-{cell}", f"index-db:iib-pub-pending-{cell}-{cell}"
    changed = {k for k in before.tags.keys() | after.tags.keys() if before.tags.get(k) != after.tags.get(k)}
    problems = []
    if changed != {output, target, canonical, own}:
        problems.append(f"tags changed {sorted(changed)}, expected {sorted({output, target, canonical, own})}")
    if not after.tags.get(output) or after.tags.get(target) != after.tags.get(output):
        problems.append(f"{target} is not {output}")
    new_db = _db_layer(env, own)
    if new_db is None or _db_layer(env, canonical) != new_db:
        problems.append(f"{canonical} does not hold the merged index.db of {own}")
    if after.refs.get(OCP_BRANCH) == before.refs.get(OCP_BRANCH):
        problems.append(f"branch {OCP_BRANCH} did not move")
    if set(after.refs) - set(before.refs):
        problems.append(f"branches left behind: {sorted(set(after.refs) - set(before.refs))}")
    new_mrs = sorted(state for iid, state in after.mrs.items() if iid not in before.mrs)
    if new_mrs != ["merged"]:
        problems.append(f"new merge requests {new_mrs}, expected one merged")
    return problems


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


def private_target(env, tag: str, ocp: str = "v4.17") -> str:  # noqa: ANN001
    """A copy of the seeded target index (image + index.db artifact) under its own tag."""
    seed = env.seeded
    ref = ImageRef.parse(f"{env.registry_host}/{INDEX_REPO}:{tag}")
    labels = {plan.VERSION_LABEL: ocp, plan.SCOPE_LABEL: "prod"}
    build_image(env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)], labels)
    pulled = env.artifacts.pull(env.artifacts.canonical_ref(seed.target_index))
    env.artifacts.push(env.artifacts.canonical_ref(str(ref)), pulled.path, {"request_id": "seed"})
    return str(ref)


def overwrite_merge(env, target: str, cell: str):  # noqa: ANN001, ANN201 - SandboxEnv in, a Prefect State out
    """The seeded merge with overwrite, in process, the token handed over as `indexflow merge` does."""
    with local_overwrite_token("demo:demo"):
        return merge_index_image(source_from_index=env.seeded.source_index, target_index=target,
                                 deprecation_list=env.seeded.deprecation_list, overwrite_target_index=True,
                                 ignore_bundle_ocp_version=True, request_id=cell, settings_block=BLOCK,
                                 return_state=True)


@pytest.mark.parametrize("step,kind", cells())
def test_fault_leaves_no_trace(step, kind, proxied_env, clean_proxies, tmp_path):
    env = proxied_env
    cell = f"rel-{abs(hash((step.name, kind))) % 10**8}"
    target = private_target(env, cell)
    shutil.rmtree(os.environ["INDEXFLOW_CACHE_DIR"], ignore_errors=True)  # cold: every read goes out
    before = remote_state(env)
    fault = env.proxies[step.proxy].add_fault(path=step.path, method=step.method, times=10**6, **FAULTS[kind])
    t = time.monotonic()
    state = overwrite_merge(env, target, cell)
    env.proxies[step.proxy].clear()
    outcome = _judge(state, env, before, fault.injected, time.monotonic() - t, cell)
    TABLE.append((step.name, kind, fault.injected, outcome))
    assert fault.injected > 0, f"{step.name}: the fault never fired (pattern {step.path!r})"
    assert outcome.startswith("recovered"), outcome


ONCE = [pytest.param(step, kind, id=f"{step.replace(' ', '-')}:{kind}-once") for step, kind in
        [("push the index.db artifact", "error"), ("merge the merge request", "dropped")]]


@pytest.mark.parametrize("step_name,kind", ONCE)
def test_passing_fault_ends_in_the_whole_result(step_name, kind, proxied_env, clean_proxies):
    """A fault that clears (once) must be ridden through, and the run then owes the whole result:
    a retry that skipped a write (a swallowed push, a lost merge) shows up here."""
    env = proxied_env
    step = next(s for s in STEPS if s.name == step_name)
    cell = f"once-{abs(hash((step_name, kind))) % 10**8}"
    target = private_target(env, cell)
    before = remote_state(env)
    fault = env.proxies[step.proxy].add_fault(path=step.path, method=step.method, times=1, **FAULTS[kind])
    state = overwrite_merge(env, target, cell)
    assert fault.injected == 1
    assert state.is_completed(), state.message
    assert complete_result_problems(env, before, remote_state(env), cell) == []


def _judge(state, env, before, injected: int, secs: float, cell: str) -> str:  # noqa: ANN001
    """'recovered: ...' when the run failed with one clear line and left no trace, or completed with
    exactly the whole result; anything in between is a half-published merge."""
    if state.is_completed():
        problems = complete_result_problems(env, before, remote_state(env), cell)
        if problems:
            return f"NOT recovered: completed without the whole result: {'; '.join(problems)}"
        return f"recovered: retried through to the whole result ({secs:.0f}s)"
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
