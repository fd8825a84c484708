"""`indexflow demo`: sandbox up, seed real catalog data, merge, and prove the output image is right.

The proof: the output image's `/configs` is byte-for-byte the catalog the merged MR left on the
Git branch, and it validates.
"""

from __future__ import annotations

import filecmp
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from indexflow.app.merge_cmd import TOKEN_ENV, apply_prefect_defaults

apply_prefect_defaults()
UI_PORT = 4200

DEMO_BLOCK = "indexflow-demo"


def _tree_diff(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on either side or different bytes)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def fbc_bundle_images(configs: Path) -> set[str]:
    """The `image` of every olm.bundle in a catalog dir (JSON streams, as the merge writes them)."""
    decoder, images = json.JSONDecoder(), set()
    for path in sorted(configs.rglob("*.json")):
        text, pos = path.read_text(), 0
        while (pos := _skip_space(text, pos)) < len(text):
            obj, pos = decoder.raw_decode(text, pos)
            if obj.get("schema") == "olm.bundle":
                images.add(obj["image"])
    return images


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def check_output_image(env, pullspec: str, branch: str, out: TextIO,  # noqa: ANN001 - SandboxEnv
                       index_db_ref: str | None = None) -> None:
    """Unpack the output image, validate its /configs and compare it with the merged Git branch and,
    when given, with the bundles of the merged index.db artifact (the catalog is exactly the merge)."""
    from indexflow.catalog.validate import validate_fbc
    from indexflow.errors import IndexflowError
    from indexflow.gitops import clone_branch
    from indexflow.registry.refs import ImageRef

    work = Path(tempfile.mkdtemp(prefix="indexflow-demo-check-"))
    image_dir = Path(env.registry_client.pull_bundle(ImageRef.parse(pullspec), work / "image"))
    configs = image_dir / "configs"
    validate_fbc(configs)
    clone_branch(env.git_url, branch, work / "git", env.git_token)
    differences = _tree_diff(configs, work / "git" / "configs")
    if differences:
        raise IndexflowError(f"output image {pullspec} /configs differs from Git branch {branch}: "
                             f"{', '.join(differences[:5])}")
    packages = sorted(p.name for p in configs.iterdir() if p.is_dir())
    print(f"check: {pullspec} /configs validates and equals Git {branch}/configs "
          f"({len(packages)} packages)", file=out)
    if index_db_ref:
        from indexflow.catalog.db import list_bundles

        in_db = {b.bundlePath for b in list_bundles(env.artifacts.pull(index_db_ref).path)}
        in_image = fbc_bundle_images(configs)
        if in_db != in_image:
            raise IndexflowError(f"output image {pullspec} /configs holds {len(in_image)} bundles, the merged "
                                 f"index.db {index_db_ref} {len(in_db)}: {sorted(in_db ^ in_image)[:3]}")
        print(f"check: its {len(in_image)} bundles are exactly those of the merged index.db {index_db_ref}",
              file=out)


def start_prefect_api() -> str:
    """Bring up the API (the ephemeral one unless PREFECT_API_URL is set) while the seed runs."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()
        return str(client.api_url)


def private_prefect_home(home: Path | None) -> Path:
    """The demo's own Prefect home (database, blocks, results): `home`, kept, or a temporary one removed at
    exit, so nothing (a run, blocks holding tokens) lands in the user's Prefect database. Call it before
    Prefect is imported: Prefect reads its settings once."""
    import atexit
    import os
    import shutil

    if home is None:
        home = Path(tempfile.mkdtemp(prefix="indexflow-demo-prefect-"))
        atexit.register(shutil.rmtree, home, True)  # registered first: runs after Prefect stops its API
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.pop("PREFECT_API_URL", None)  # the demo's ephemeral API on that home, never a shared server
    os.environ.pop("PREFECT_PROFILES_PATH", None)
    return home


def rerun_line(seed, prefect_home: Path) -> str:  # noqa: ANN001 - SeedResult
    """The demo's merge as one command line; no request id, so each run of it gets a fresh one."""
    from indexflow.app.serve_cmd import indexflow_command

    return (f"PREFECT_HOME={prefect_home} {TOKEN_ENV}=demo:demo {indexflow_command()} merge "
            f"--source-from-index {seed.source_index} --target-index {seed.target_index} "
            f"--deprecation-list {','.join(seed.deprecation_list)} --overwrite-target-index "
            f"--ignore-bundle-ocp-version --build-tag demo --settings {DEMO_BLOCK}")


def print_kept(env, result: dict, prefect_home: Path, out: TextIO) -> None:  # noqa: ANN001 - SandboxEnv
    """Where to look at the run afterwards and how to merge again (the sandbox keeps running)."""
    print(f"ui: http://127.0.0.1:{UI_PORT}/runs/flow-run/{result['flow_run_id']}", file=out)
    print(f"ui-server: PREFECT_HOME={prefect_home} prefect server start --port {UI_PORT}", file=out)
    print(f"state dir: {env.state_dir}", file=out)
    print(f"rerun: {rerun_line(env.seeded, prefect_home)}", file=out)
    print(f"stop: indexflow sandbox down --state-dir {env.state_dir}", file=out)


@contextmanager
def sandbox_env(state_dir: Path | None, keep: bool) -> Iterator[object]:
    """The sandbox in this process (gone when the demo ends), or with `keep` the background one of
    `indexflow sandbox up`, which outlives the demo so the `rerun:` line has something to merge on."""
    from sandbox.demo_env import SandboxEnv

    if not keep:
        with SandboxEnv.up(state_dir) as env:
            yield env
        return
    from sandbox.cli import running_state, start_background

    state = running_state(state_dir) or start_background(state_dir)
    with SandboxEnv.attach(state) as env:
        yield env


def quiet_task_runs_on_console() -> None:
    """The demo's console shows the flow's story (state reasons, results); the ~60 "task run finished"
    lines per merge stay in the UI and API only (warnings and errors still print)."""
    import logging

    def story_only(record: logging.LogRecord) -> bool:
        return not (record.name == "prefect.task_runs" and record.levelno < logging.WARNING)

    for handler in logging.getLogger().handlers:
        handler.addFilter(story_only)


def run_demo(state_dir: Path | None = None, keep: bool = False, out: TextIO = sys.stdout,
             prefect_home: Path | None = None) -> int:
    from prefect.settings import temporary_settings

    from flows.merge_index import run_merge

    quiet_task_runs_on_console()
    started = time.monotonic()
    with sandbox_env(state_dir, keep) as env, ThreadPoolExecutor(1) as pool, \
            temporary_settings(updates={"flows.heartbeat_frequency": None}):
        print(f"sandbox up in {time.monotonic() - started:.1f}s (state in {env.state_dir})", file=out)
        api = pool.submit(start_prefect_api)
        t = time.monotonic()
        seed = env.seed()
        print(f"seeded {seed.bundles} bundles of {seed.packages} packages; source {seed.source_index} "
              f"({seed.source_bundles} bundles), target {seed.target_index} ({seed.target_bundles} bundles), "
              f"{len(seed.missing_from_source)} missing from source, in {time.monotonic() - t:.1f}s", file=out)
        print(f"Prefect API ready ({api.result()})", file=out)
        env.save_blocks(DEMO_BLOCK)
        t = time.monotonic()
        result = run_merge(source_from_index=seed.source_index, target_index=seed.target_index,
                           deprecation_list=seed.deprecation_list, overwrite_target_index=True,
                           overwrite_target_index_token="demo:demo", ignore_bundle_ocp_version=True,
                           build_tags=["demo"], request_id="1", settings_block=DEMO_BLOCK)
        for line in result["lines"]:
            print(line, file=out)
        print(f"merge flow run: {time.monotonic() - t:.1f}s; per-step seconds:", file=out)
        for name, secs in result["timings"].items():
            print(f"  {secs:8.2f}  {name}", file=out)
        check_output_image(env, result["output_pullspecs"][0], "v4.17", out, result["index_db"][0])
        if keep and prefect_home is not None:
            print_kept(env, result, prefect_home, out)
    print(f"demo finished in {time.monotonic() - started:.1f}s", file=out)
    return 0
