"""Bad inputs through the real flow on the seeded sandbox: each ends in one sentence naming the input,
and nothing remote is written: no write request passes the proxies in front of the registry,
git/GitLab and Kubernetes, and registry tags, git refs and MRs are the same before and after.

Each case builds what it needs on the sandbox first (an index image with odd labels, a broken
index.db artifact, a bundle image with a hostile layer...), then runs `merge_index_image`.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from indexflow.catalog.add import add_bundles
from indexflow.catalog.bundle import load_bundle_dir
from indexflow.errors import IndexflowError
from indexflow.merge import plan
from indexflow.registry.refs import ImageRef
from sandbox import seed_data
from sandbox.images import build_image, tar_gz
from sandbox.seed import BINARY_LAYER_FILES, BUNDLE_NS, INDEX_REPO
from tests.reliability.sandbox_session import BLOCK, remote_state, remote_writes, reset_request_logs

OK_LABELS = {plan.VERSION_LABEL: "v4.17", plan.SCOPE_LABEL: "prod",
             "operators.operatorframework.io.index.configs.v1": "/configs"}


@dataclass
class Ctx:
    env: object  # ProxiedEnv
    tmp: Path
    name: str

    @property
    def seed(self):  # noqa: ANN201 - SeedResult
        return self.env.seeded

    @property
    def host(self) -> str:
        return self.env.registry_host

    def base(self, **params: object) -> dict:
        """The demo's merge parameters, overridden."""
        values = dict(source_from_index=self.seed.source_index, target_index=self.seed.target_index,
                      deprecation_list=None, ignore_bundle_ocp_version=True, request_id=f"bad-{self.name}",
                      settings_block=BLOCK)
        values.update(params)
        return values

    def index(self, labels: dict[str, str] | None = None, db: Path | None = None, repo: str = INDEX_REPO) -> str:
        """An index image (by default under the seeded repository, which maps to the Git repo) and its
        index.db artifact."""
        ref = ImageRef.parse(f"{self.host}/{repo}:bad-{self.name}")
        build_image(self.env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)],
                    OK_LABELS if labels is None else labels)
        if db is not None:
            self.env.artifacts.push(self.env.artifacts.canonical_ref(str(ref)), db, {"request_id": "bad"})
        return str(ref)

    def target_db(self) -> Path:
        """A private copy of the seeded target index.db."""
        pulled = self.env.artifacts.pull(self.env.artifacts.canonical_ref(self.seed.target_index))
        path = self.tmp / "target.db"
        shutil.copyfile(pulled.path, path)
        return path

    def db_file(self, content: bytes) -> Path:
        path = self.tmp / "index.db"
        path.write_bytes(content)
        return path

    def bundle(self, package: str, version: str, layer: bytes | None = None, replaces: str | None = None,
               tag_only: bool = False) -> tuple[str, Path]:
        """A bundle image (optionally with a hostile `layer`) and a valid local dir describing it."""
        rec = {"package": package, "version": version, "version_dir": version, "csv_name": f"{package}.v{version}",
               "channels": ["alpha"], "default_channel": "alpha", "replaces": replaces,
               "ocp_versions": "v4.12"}
        d = seed_data.write_bundle_dir(rec, self.tmp / "bundles" / f"{package}-{version}")
        ref = ImageRef.parse(f"{self.host}/{BUNDLE_NS}/{package}:{version}")
        digest = build_image(self.env.registry_client, ref, [layer or _dir_layer(d)], seed_data.bundle_labels(rec))
        return (str(ref) if tag_only else f"{ref.name}@{digest}"), d

    def target_with(self, *bundles: tuple[str, Path]) -> str:
        """A target index whose index.db is the seeded target plus `bundles` (semver mode accepts any graph)."""
        db = self.target_db()
        add_bundles(db, [load_bundle_dir(d, ref) for ref, d in bundles], mode="semver")
        return self.index(db=db)


def _dir_layer(d: Path) -> bytes:
    return tar_gz({str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()})


def _raw_tar_gz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A layer with headers written as given (sizes may lie: the oversized case)."""
    raw = b"".join(info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512) for info, data in members)
    return gzip.compress(raw + b"\0" * 1024, mtime=0)


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info


def _sqlite_without_tables(ctx: Ctx) -> Path:
    path = ctx.tmp / "empty-schema.db"
    sqlite3.connect(path).close()
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE unrelated (x)")
    return path


def _tag_only_db(ctx: Ctx) -> str:
    return ctx.target_with(ctx.bundle("tagonly-operator", "0.0.1", tag_only=True))


def _ocp_target(ctx: Ctx, ocp: str, **params: object) -> dict:
    """A target index labelled with another OCP version; the binary image given, so only Git can fail."""
    return ctx.base(target_index=ctx.index(labels={**OK_LABELS, plan.VERSION_LABEL: ocp}, db=ctx.target_db()),
                    binary_image=ctx.seed.binary_image, **params)


def _branch_without_configs(ctx: Ctx, branch: str) -> dict:
    """Push a branch holding only a README to the seeded Git repo, then target that OCP version."""
    import git

    repo = git.Repo.init(ctx.tmp / "repo", initial_branch=branch)
    (ctx.tmp / "repo" / "README.md").write_text("no catalog here\n")
    repo.index.add(["README.md"])
    repo.index.commit("README only", author=git.Actor("t", "t@localhost"), committer=git.Actor("t", "t@localhost"))
    ctx.env.stack.publish_git_repo(ctx.env.git_project, ctx.tmp / "repo")
    return _ocp_target(ctx, branch)


# Each case: (id, builder(ctx) -> (flow parameters, text the sentence must contain)).
CASES: list = [
    ("source-pullspec-malformed", lambda c: (c.base(source_from_index="Not A Pullspec!!"), "Not A Pullspec!!")),
    ("target-pullspec-malformed", lambda c: (c.base(target_index="registry/UPPER:t@sha256:zz"), "registry/UPPER")),
    ("source-index-missing", lambda c: (c.base(source_from_index=f"{c.host}/{INDEX_REPO}:nope"), ":nope")),
    ("target-index-missing", lambda c: (c.base(target_index=f"{c.host}/{INDEX_REPO}:gone"), ":gone")),
    ("deprecation-entry-malformed", lambda c: (c.base(deprecation_list=["bad pullspec"]), "bad pullspec")),
    ("deprecation-entry-not-in-registry",
     lambda c: (c.base(deprecation_list=[f"{c.host}/{BUNDLE_NS}/ghost-operator:1.0.0"]), "ghost-operator")),
    ("binary-image-malformed", lambda c: (c.base(binary_image="::nope::"), "::nope::")),
    ("overwrite-without-token", lambda c: (c.base(overwrite_target_index=True), "overwrite_target_index_token")),
    ("token-without-overwrite",
     lambda c: (c.base(overwrite_target_index_token="u:p"), "overwrite_target_index")),
    ("distribution-scope-unknown", lambda c: (c.base(distribution_scope="galaxy"), '"distribution_scope"')),
    ("distribution-scope-widened",
     lambda c: (c.base(target_index=c.index(labels={**OK_LABELS, plan.SCOPE_LABEL: "dev"}, db=c.target_db()),
                       distribution_scope="prod"), "distribution_scope")),
    ("graph-mode-unknown", lambda c: (c.base(graph_update_mode="sideways"), '"graph_update_mode"')),
    ("graph-mode-not-allowed", lambda c: (c.base(graph_update_mode="semver"), "graph_update_mode")),
    ("build-tag-invalid", lambda c: (c.base(build_tags=["bad tag!"]), "bad tag!")),
    ("delivery-labels-missing",
     lambda c: (c.base(target_index=c.index(labels={}, db=c.target_db())), "v4.5")),
    ("ocp-version-unknown",
     lambda c: (c.base(target_index=c.index(labels={**OK_LABELS, plan.VERSION_LABEL: "v4.x"}, db=c.target_db())),
                "v4.x")),
    ("no-binary-image-for-ocp",
     lambda c: (c.base(target_index=c.index(labels={**OK_LABELS, plan.VERSION_LABEL: "v4.12"}, db=c.target_db())),
                "v4.12")),
    ("index-db-corrupt", lambda c: (c.base(target_index=c.index(db=c.db_file(b"SQLite format 3\0" + b"\xff" * 4000))),
                                    "bad-index-db-corrupt")),
    ("index-db-empty", lambda c: (c.base(target_index=c.index(db=c.db_file(b""))), "bad-index-db-empty")),
    ("index-db-not-sqlite", lambda c: (c.base(target_index=c.index(db=c.db_file(b'{"not": "a database"}\n'))),
                                       "bad-index-db-not-sqlite")),
    ("index-db-no-schema", lambda c: (c.base(target_index=c.index(db=_sqlite_without_tables(c))),
                                      "bad-index-db-no-schema")),
    ("index-db-artifact-missing", lambda c: (c.base(target_index=c.index(db=None)), "bad-index-db-artifact-missing")),
    ("index-not-in-git-map",
     lambda c: (c.base(target_index=c.index(db=c.target_db(), repo="elsewhere/index")), "elsewhere/index")),
    ("git-branch-missing", lambda c: (_ocp_target(c, "v4.18"), "v4.18")),
    ("git-branch-without-configs", lambda c: (_branch_without_configs(c, "v4.19"), "configs")),
    ("bundle-path-tag-only", lambda c: (c.base(target_index=_tag_only_db(c)), "tagonly-operator")),
    ("bundle-missing-from-registry",
     lambda c: (c.base(target_index=c.target_with(_deleted_bundle(c))), "vanished-operator")),
    ("bundle-layer-path-traversal",
     lambda c: (c.base(target_index=c.target_with(c.bundle("traversal-operator", "0.0.1", layer=_raw_tar_gz(
         [(_info("../../etc/evil", 4), b"evil")])))), "traversal-operator")),
    ("bundle-layer-oversized",
     lambda c: (c.base(target_index=c.target_with(c.bundle("huge-operator", "0.0.1", layer=_raw_tar_gz(
         [(_info("manifests/huge.yaml", 8 << 30), b"")])))), "huge-operator")),
    ("bundle-csv-yaml-malformed",
     lambda c: (c.base(target_index=c.target_with(c.bundle("badyaml-operator", "0.0.1", layer=tar_gz({
         "manifests/badyaml.clusterserviceversion.yaml": b"kind: ClusterServiceVersion\nmetadata: {name: [unclosed\n",
         "metadata/annotations.yaml": yaml.safe_dump({"annotations": {
             "operators.operatorframework.io.bundle.package.v1": "badyaml-operator",
             "operators.operatorframework.io.bundle.channels.v1": "alpha",
             "operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
             "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
             "operators.operatorframework.io.bundle.metadata.v1": "metadata/"}}).encode()})))),
                "badyaml-operator")),
    ("bundle-replaces-cycle",
     lambda c: (c.base(target_index=c.target_with(c.bundle("cycle-operator", "1.0.0", replaces="cycle-operator.v2.0.0"),
                                                  c.bundle("cycle-operator", "2.0.0", replaces="cycle-operator.v1.0.0"))),
                "cycle-operator")),
]


def _deleted_bundle(ctx: Ctx) -> tuple[str, Path]:
    """A bundle recorded in the index.db whose image was deleted from the registry afterwards."""
    ref, d = ctx.bundle("vanished-operator", "0.0.1")
    pinned = ImageRef.parse(ref)
    ctx.env.registry_client.delete_manifest(pinned, pinned.digest)
    return ref, d


def _id(case) -> str:  # noqa: ANN001 - a tuple or a pytest param
    return case.values[0] if hasattr(case, "values") else case[0]


def _one_sentence(text: str) -> bool:
    """One line a user can read: no traceback, no dump (IIB's own texts sometimes add a second clause)."""
    return "\n" not in text.strip() and "Traceback" not in text and 0 < len(text) < 1500


@pytest.mark.parametrize("name,build", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_ends_in_one_sentence_and_writes_nothing(name, build, proxied_env, tmp_path):
    ctx = Ctx(proxied_env, tmp_path, name)
    params, needle = build(ctx)
    before = remote_state(proxied_env)
    reset_request_logs(proxied_env)
    with local_overwrite_token(params.pop("overwrite_target_index_token", None)):  # as `indexflow merge`
        state = merge_index_image(**params, return_state=True)
    writes = remote_writes(proxied_env)
    after = remote_state(proxied_env)
    assert state.is_failed(), f"{name}: the run did not fail"
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IndexflowError), f"{name}: not a user-facing error: {error!r}"
    text = str(error)
    print(f"\nBAD INPUT {name}: {text}")
    assert _one_sentence(text), f"{name}: not one sentence: {text!r}"
    assert needle in text, f"{name}: the sentence does not name the input {needle!r}: {text!r}"
    assert not writes, f"{name}: the run wrote to a remote: {writes[:5]}"
    after.assert_same(before)
