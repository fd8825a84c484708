"""Seed the sandbox with a realistic source/target pair from real catalog data (sandbox/data).

What it builds, all on the local stack:
- one bundle image per record under its real community name
  (`<registry>/community-operator-pipeline-prod/<package>:<version>`) with real labels;
- a target index.db (v4.17) with every bundle, and a source index.db (v4.16) without the newest
  bundles of each package (those are "missing from the source"), without one whole package (new in
  the target) and with one package the target dropped;
- both as ORAS index.db artifacts under their canonical tags, and as index images (binary image +
  `/configs` + delivery labels);
- a Git repo with `configs/` on branches v4.16 and v4.17 (the published catalogs);
- the deprecation list (a tag pullspec) and the OCP-incompatible bundle, for the demo and tests.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexflow.catalog.add import add_bundles
from indexflow.catalog.bundle import load_bundle_dir
from indexflow.catalog.migrate import migrate
from indexflow.merge import plan
from sandbox import seed_data

SOURCE_OCP, TARGET_OCP = "v4.16", "v4.17"
INDEX_REPO = "rh-osbs/iib-pub-pending"
BUNDLE_NS = "community-operator-pipeline-prod"
BINARY_REPO = "openshift4/ose-operator-registry-rhel9"
NEW_IN_TARGET = "kube-green"  # whole package missing from the source
DROPPED_FROM_TARGET = "alloydb-omni-operator"  # only the source has it: it must survive the merge
DEPRECATED_PACKAGE = "hawtio-operator"  # one of its source bundles is on the deprecation list


@dataclass
class SeedResult:
    registry: str
    source_index: str
    target_index: str
    binary_image: str
    git_url: str
    deprecation_list: list[str]
    invalid_bundle: str
    bundles: int
    packages: int
    missing_from_source: list[str] = field(default_factory=list)
    source_bundles: int = 0
    target_bundles: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "SeedResult":
        return cls(**json.loads(path.read_text()))


def source_selection(packages: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(source, target) record sets: the source lags one or two releases behind per package."""
    source, target = {}, {}
    for pkg, recs in packages.items():
        if pkg != DROPPED_FROM_TARGET:
            target[pkg] = recs
        if pkg == NEW_IN_TARGET:
            continue
        lag = 4 if pkg == seed_data.WITH_INVALID else (2 if len(recs) >= 5 else 1)
        source[pkg] = recs if pkg == DROPPED_FROM_TARGET else recs[:-lag]
    return source, target


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755 if name.endswith("opm") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def configs_layer(configs: Path) -> bytes:
    """`/configs/<package>/catalog.json` as an image layer."""
    files = {f"configs/{p.relative_to(configs)}": p.read_bytes() for p in sorted(configs.rglob("*")) if p.is_file()}
    return _tar_gz(files)


BINARY_LAYER_FILES = {"bin/opm": b"#!/bin/sh\necho 'opm stand-in: catalogs are served from /configs'\n"}


class Seeder:
    """Builds the seed on a registry host (a `RegistryClient` + `IndexDbArtifacts` from the stack)."""

    def __init__(self, client, host: str, artifacts, work: Path) -> None:  # noqa: ANN001
        self.client, self.host, self.artifacts, self.work = client, host, artifacts, work
        self.dirs: dict[str, Path] = {}  # digest ref -> bundle dir

    def push_bundles(self, packages: dict[str, list[dict]]) -> dict[str, str]:
        """csv name -> digest pullspec, pushing bundle images concurrently."""
        from sandbox.images import push_bundle_image

        from indexflow.registry.refs import ImageRef

        def one(rec: dict) -> tuple[str, str]:
            d = seed_data.write_bundle_dir(rec, self.work / "bundles" / rec["package"] / seed_data.tag_of(rec["version_dir"]))
            ref = ImageRef.parse(f"{self.host}/{BUNDLE_NS}/{rec['package']}:{seed_data.tag_of(rec['version_dir'])}")
            push_bundle_image(self.client, ref, d, seed_data.bundle_labels(rec))
            pinned = f"{self.host}/{BUNDLE_NS}/{rec['package']}@{self.client.resolve(ref)}"
            self.dirs[pinned] = d
            return rec["csv_name"], pinned

        with ThreadPoolExecutor(16) as pool:
            return dict(pool.map(one, [r for recs in packages.values() for r in recs]))

    def build_db(self, name: str, packages: dict[str, list[dict]], pinned: dict[str, str]) -> Path:
        db = self.work / name / "index.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        refs = [pinned[r["csv_name"]] for recs in packages.values() for r in recs]
        add_bundles(db, [load_bundle_dir(self.dirs[ref], ref) for ref in refs])
        return db

    def binary_image(self) -> str:
        from sandbox.images import build_image

        from indexflow.registry.refs import ImageRef

        ref = ImageRef.parse(f"{self.host}/{BINARY_REPO}:{TARGET_OCP}")
        build_image(self.client, ref, [_tar_gz(BINARY_LAYER_FILES)], {"name": "ose-operator-registry"})
        return str(ref)

    def index_image(self, tag: str, configs: Path, ocp: str) -> str:
        from sandbox.images import build_image

        from indexflow.registry.refs import ImageRef

        ref = ImageRef.parse(f"{self.host}/{INDEX_REPO}:{tag}")
        labels = {plan.VERSION_LABEL: ocp, plan.SCOPE_LABEL: "prod",
                  "operators.operatorframework.io.index.configs.v1": "/configs"}
        build_image(self.client, ref, [_tar_gz(BINARY_LAYER_FILES), configs_layer(configs)], labels)
        return str(ref)

    def publish_index(self, db: Path, ocp: str) -> tuple[str, Path]:
        """Index image + canonical index.db artifact for one OCP version; returns (pullspec, configs)."""
        configs = self.work / f"configs-{ocp}"
        migrate(db, configs, level=plan.migrate_level(ocp))
        pullspec = self.index_image(ocp, configs, ocp)
        self.artifacts.push(self.artifacts.canonical_ref(pullspec), db,
                            {"request_id": "seed", "request_type": "seed"})
        return pullspec, configs


def seed_registry(client, host: str, artifacts, work: Path) -> tuple[SeedResult, dict[str, Path]]:  # noqa: ANN001
    """Bundles, dbs, artifacts and images; returns the result and the configs dir per OCP branch."""
    packages = seed_data.load()
    source, target = source_selection(packages)
    s = Seeder(client, host, artifacts, work)
    pinned = s.push_bundles(packages)
    source_db = s.build_db("source", source, pinned)
    target_db = s.build_db("target", target, pinned)
    source_index, source_configs = s.publish_index(source_db, SOURCE_OCP)
    target_index, target_configs = s.publish_index(target_db, TARGET_OCP)
    in_source = {r["csv_name"] for recs in source.values() for r in recs}
    missing = [pinned[r["csv_name"]] for recs in target.values() for r in recs if r["csv_name"] not in in_source]
    invalid = next(r for r in packages[seed_data.WITH_INVALID] if r.get("ocp_versions") == "v4.11-v4.12")
    dep = source[DEPRECATED_PACKAGE][-2]
    result = SeedResult(
        registry=host, source_index=source_index, target_index=target_index, binary_image=s.binary_image(),
        git_url="", deprecation_list=[f"{host}/{BUNDLE_NS}/{DEPRECATED_PACKAGE}:{seed_data.tag_of(dep['version_dir'])}"],
        invalid_bundle=pinned[invalid["csv_name"]], bundles=len(pinned), packages=len(packages),
        missing_from_source=missing, source_bundles=sum(map(len, source.values())),
        target_bundles=sum(map(len, target.values())))
    return result, {SOURCE_OCP: source_configs, TARGET_OCP: target_configs}


def write_git_branches(repo_dir: Path, configs: dict[str, Path], author: tuple[str, str]) -> None:
    """A local repo with one branch per OCP version holding that catalog under `configs/`."""
    import shutil

    import git

    repo = git.Repo.init(repo_dir, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", author[0])
        cw.set_value("user", "email", author[1])
    (repo_dir / "README.md").write_text("Index configs managed by indexflow (sandbox seed).\n")
    repo.index.add(["README.md"])
    repo.index.commit("Initial commit")
    for branch, src in configs.items():
        repo.git.checkout("-B", branch, "main")
        shutil.rmtree(repo_dir / "configs", ignore_errors=True)
        shutil.copytree(src, repo_dir / "configs")
        repo.git.add("-A")
        repo.index.commit(f"Catalog for {branch}")
    repo.git.checkout("main")


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="indexflow-seed-"))
