"""Hostile content placed on the seeded sandbox for flow-level cases (tests/hostile, tests/security).

- `symlinked_configs`: a Git project whose catalog branch commits two links in `configs/`: one to
  the run's own credentials file (where the docker config was written beside the clone) and one over
  a package the merge rewrites, pointing at a file outside; an index image mapped to that project.
- `alias_bomb_target`: a target index whose index.db lists a bundle whose image carries a YAML
  billion-laughs manifest (the index.db row itself is harmless: it came from a clean local dir).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from indexflow.catalog.add import add_bundles
from indexflow.catalog.bundle import load_bundle_dir
from indexflow.merge import plan
from indexflow.registry.refs import ImageRef
from sandbox import seed_data
from sandbox.images import build_image, tar_gz
from sandbox.seed import BINARY_LAYER_FILES, BUNDLE_NS, INDEX_REPO

LABELS = {plan.VERSION_LABEL: "v4.17", plan.SCOPE_LABEL: "prod",
          "operators.operatorframework.io.index.configs.v1": "/configs"}
HOSTILE_INDEX_REPO = "hostile/index"
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@dataclass(frozen=True)
class HostileTarget:
    target_index: str
    settings_block: str
    victim: Path | None = None  # a file outside every tree the run owns, which must stay as it is


def index_image(env, repo: str, tag: str) -> str:  # noqa: ANN001 - ProxiedEnv
    """An index image under `repo` with a copy of the seeded target's index.db as its artifact."""
    ref = ImageRef.parse(f"{env.registry_host}/{repo}:{tag}")
    build_image(env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)], LABELS)
    pulled = env.artifacts.pull(env.artifacts.canonical_ref(env.seeded.target_index))
    env.artifacts.push(env.artifacts.canonical_ref(str(ref)), pulled.path, {"request_id": "hostile"})
    return str(ref)


def registry_secret(env, block: str, password: str) -> dict:  # noqa: ANN001
    """A Secret block holding a docker config with `password` for the sandbox registry."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    config = {"auths": {env.registry_host: {"auth": base64.b64encode(f"robot:{password}".encode()).decode()}}}
    Secret(value=SecretStr(json.dumps(config))).save(block, overwrite=True)
    return config


def symlinked_configs(env, tmp: Path, name: str, password: str) -> HostileTarget:  # noqa: ANN001
    """Git project `hostile/<name>` (branch v4.17 = the seeded one + two links), an index image mapped
    to it, and a settings block `<name>` whose registry credentials hold `password`."""
    import git

    project = f"hostile/{name}"
    work = tmp / "repo"
    repo = git.Repo.clone_from(str(env.stack.git.bare_path(env.git_project)), work, branch="v4.17")
    victim = tmp / "outside" / "victim.json"
    victim.parent.mkdir(parents=True)
    victim.write_text('{"precious": true}\n')
    configs = work / "configs"
    package = sorted(p.name for p in configs.iterdir() if p.is_dir())[0]  # the merge rewrites its catalog.json
    for path in (configs / package).iterdir():
        path.unlink() if path.is_file() else shutil.rmtree(path)
    os.symlink(victim, configs / package / "catalog.json")
    (configs / "leak").mkdir()
    os.symlink("../../../docker-config.json", configs / "leak" / "catalog.json")  # the run's credentials
    repo.git.add(A=True)
    actor = git.Actor("hostile", "hostile@localhost")
    repo.index.commit("links in configs/", author=actor, committer=actor)
    env.stack.publish_git_repo(project, work)
    target = index_image(env, HOSTILE_INDEX_REPO, name)
    registry_secret(env, f"{name}-registry-auth", password)
    mapping = {f"{env.registry_host}/{INDEX_REPO}": env.git_url,
               f"{env.registry_host}/{HOSTILE_INDEX_REPO}": env.stack.git_repo_url(project)}
    env.save_blocks(name, index_to_gitlab_push_map=mapping, registry_auth_secret=f"{name}-registry-auth",
                    konflux_pipeline_timeout=25)
    return HostileTarget(target, name, victim)


def alias_bomb_target(env, tmp: Path, name: str, settings_block: str) -> HostileTarget:  # noqa: ANN001
    """A target index (seeded Git mapping) listing `bomb-operator` 0.0.1, whose image adds a
    billion-laughs manifest to a valid bundle."""
    rec = {"package": "bomb-operator", "version": "0.0.1", "version_dir": "0.0.1", "csv_name": "bomb-operator.v0.0.1",
           "channels": ["alpha"], "default_channel": "alpha", "replaces": None, "ocp_versions": "v4.12"}
    bundle_dir = seed_data.write_bundle_dir(rec, tmp / "bomb-bundle")
    files = {str(p.relative_to(bundle_dir)): p.read_bytes() for p in sorted(bundle_dir.rglob("*")) if p.is_file()}
    files["manifests/bomb.yaml"] = BOMB.encode()
    ref = ImageRef.parse(f"{env.registry_host}/{BUNDLE_NS}/bomb-operator:0.0.1")
    digest = build_image(env.registry_client, ref, [tar_gz(files)], seed_data.bundle_labels(rec))
    pinned = f"{ref.name}@{digest}"
    pulled = env.artifacts.pull(env.artifacts.canonical_ref(env.seeded.target_index))
    db = tmp / "target.db"
    shutil.copyfile(pulled.path, db)
    add_bundles(db, [load_bundle_dir(bundle_dir, pinned)], mode="semver")
    index = ImageRef.parse(f"{env.registry_host}/{INDEX_REPO}:{name}")
    build_image(env.registry_client, index, [tar_gz(BINARY_LAYER_FILES)], LABELS)
    env.artifacts.push(env.artifacts.canonical_ref(str(index)), db, {"request_id": "hostile"})
    return HostileTarget(str(index), settings_block)


def flow_code(params: dict) -> str:
    """A snippet for harness.run_python: run the merge; a failed run raises its IndexflowError (one line
    on stderr, exit 1), anything else is a traceback."""
    return (
        "import json\n"
        "from flows.merge_index import merge_index_image\n"
        "from indexflow.errors import IndexflowError\n"
        f"state = merge_index_image(**json.loads({json.dumps(params)!r}), return_state=True)\n"
        "if state.is_failed():\n"
        "    error = state.result(raise_on_failure=False)\n"
        "    print('STATE:', state.message)\n"
        "    raise error if isinstance(error, IndexflowError) else RuntimeError(repr(error))\n"
        "print('STATE:', state.type)\n")
