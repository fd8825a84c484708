"""Seed the sandbox with the full community catalog (../shared/corpus/bundles) for the scale bench.

Target = every bundle of the corpus (7,019 at the 2026-08-22 commit); source = the bundles that
already existed at the 2026-05-22 commit (history_deltas.json), so the merge has the real
"three months of community releases" to add. Every bundle becomes an image under its real name
(`<registry>/community-operator-pipeline-prod/<package>:<version>`) with its real labels and a
synthesised bundle dir (../shared/conformance/tools/synth_bundles.py: real CSV name, graph fields,
channels, CRDs). The index.dbs are built in semver mode: the real data is not a valid replaces graph.

A few records cannot be loaded as they are (opm rejects them too): `sanitise` repairs what is
plainly a typo (a `v` in a skipRange, a doubled `sha256:`, a default channel the bundle is not in),
drops related images that are URLs rather than image references, and drops duplicate CSV names;
the counts are reported, never hidden.

Everything expensive is cached under the state dir so a re-run of the bench reuses it: bundle dirs,
pushed images (the registry storage lives in the stack's state dir), index.dbs (per registry host,
because pinned pullspecs name it) and the index images / artifacts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

from indexflow.catalog.add import add_bundles
from indexflow.catalog.bundle import load_bundle_dir
from sandbox import seed_data
from sandbox.demo_env import GIT_PROJECT, SandboxEnv
from sandbox.seed import BUNDLE_NS, SOURCE_OCP, TARGET_OCP, Seeder, write_git_branches

CORPUS_DIR = seed_data.CORPUS.parent
SYNTH_TOOL = CORPUS_DIR.parents[1] / "conformance" / "tools" / "synth_bundles.py"
SOURCE_DATE = "2026-05-22"
SEED_VERSION = 3  # bump when the seed's content changes: cached states are rebuilt
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_V_IN_RANGE = re.compile(r"([<>=!~^]*)[vV](\d)")


def record_key(rec: dict) -> str:
    """`package_dir/version_dir`, the corpus's own name for a bundle (history_deltas uses it)."""
    return f"{rec['package_dir']}/{rec['version_dir']}"


def content_key(rec: dict) -> str:
    """record_key plus a hash of the record: a cached image digest is only reused for the same content."""
    import hashlib

    return f"{record_key(rec)}#{hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]}"


def _pullspec(text: str | None) -> str | None:
    """`text` with a doubled `sha256:` repaired, or None when it is no image reference at all
    (URLs like `https://quay.io/repository/...` or `oci://...` appear in real CSVs)."""
    from indexflow.errors import IndexflowError
    from indexflow.registry.refs import ImageRef

    if not text:
        return None
    text = text.replace("@sha256:sha256:", "@sha256:")
    try:
        ImageRef.parse(text)
    except IndexflowError:
        return None
    return text if "@" not in text or _DIGEST.match(text.partition("@")[2]) else None


def sanitise(rec: dict) -> tuple[dict, bool]:
    """A loadable copy of a record and whether anything had to change (see module docstring)."""
    fixed = dict(rec)
    fixed["relatedImages"] = [i for i in map(_pullspec, rec.get("relatedImages") or []) if i]
    fixed["containerImage"] = _pullspec(rec.get("containerImage"))
    if rec.get("skipRange"):
        fixed["skipRange"] = _V_IN_RANGE.sub(r"\1\2", rec["skipRange"])
    if rec.get("default_channel") and rec["default_channel"] not in rec["channels"]:
        fixed["default_channel"] = rec["channels"][0]
    changed = any(fixed.get(k) != rec.get(k) for k in ("skipRange", "default_channel")) \
        or fixed["containerImage"] != (rec.get("containerImage") or None) \
        or fixed["relatedImages"] != [i for i in rec.get("relatedImages") or [] if i]
    return fixed, changed


@dataclass
class Selection:
    target: list[dict]
    source: list[dict]
    sanitised: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def missing_from_source(self) -> list[dict]:
        keys = {record_key(r) for r in self.source}
        return [r for r in self.target if record_key(r) not in keys]

    def for_ocp(self, ocp: str) -> "Selection":
        """Only the bundles a catalog for `ocp` holds (label range includes it, or no label), as the
        published per-OCP community catalogs do."""
        from indexflow.merge.ocp import is_bundle_version_valid

        def keep(recs: list[dict]) -> list[dict]:
            return [r for r in recs if is_bundle_version_valid(r.get("ocp_versions"), ocp, True)]

        return Selection(keep(self.target), keep(self.source), self.sanitised, self.dropped)


def select(corpus_dir: Path = CORPUS_DIR, source_date: str = SOURCE_DATE) -> Selection:
    """Target = the whole corpus, source = minus what was added after `source_date`."""
    deltas = json.loads((corpus_dir / "history_deltas.json").read_text())
    window = next(w for w in deltas["windows"] if w["source_date"] == source_date)
    added = set(window["added"])
    target, sanitised, dropped, names = [], [], [], set()
    for line in (corpus_dir / "bundles.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if not rec.get("csv_name") or rec["csv_name"] in names:
            dropped.append(record_key(rec))  # no CSV name, or a CSV name another bundle already has
            continue
        names.add(rec["csv_name"])
        rec, changed = sanitise(rec)
        if changed:
            sanitised.append(record_key(rec))
        target.append(rec)
    source = [r for r in target if record_key(r) not in added]
    return Selection(target, source, sanitised, dropped)


def corpus_modes(corpus_dir: Path = CORPUS_DIR) -> dict[str, str]:
    """package -> graph mode, as the catalog's pipeline built each package (ci_meta.json).

    `updateGraph` when set (semver-mode / replaces-mode). The packages that leave it unset are all
    FBC-enabled: their graph lives in their catalog template, not in CSV `replaces` (which for
    rabbitmq-cluster-operator and stackgres-community names bundles that do not exist), so they
    get semver mode, the mode whose graph does not read `replaces`. Packages absent from ci_meta
    take the merge's default mode.
    """
    from indexflow.catalog.modes import mode_of

    meta = json.loads((corpus_dir / "ci_meta.json").read_text())
    modes = {}
    for package, entry in meta.items():
        mode = mode_of(package, entry)
        if mode is None and entry.get("fbc_enabled"):
            mode = "semver"
        modes[package] = mode or "replaces"
    return modes


def _synth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("synth_bundles", SYNTH_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _write_dirs(args: tuple[list[dict], str]) -> int:
    """Worker: write the bundle dirs of some records (skipping the ones already there)."""
    recs, root = args
    synth, n = _synth(), 0
    for rec in recs:
        dest = Path(root) / record_key(rec)
        if (dest / ".done").exists():
            continue
        shutil.rmtree(dest, ignore_errors=True)
        for name, text in synth.synth(rec).items():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_text(text)
        (dest / ".done").write_text(json.dumps(rec, sort_keys=True))
        n += 1
    return n


def write_bundle_dirs(recs: list[dict], root: Path, workers: int = 2) -> dict[str, Path]:
    """key -> bundle dir for every record; written once (a `.done` file holds the record it came from)."""
    root.mkdir(parents=True, exist_ok=True)
    stale = [r for r in recs if not _fresh(root / record_key(r), r)]
    for r in stale:
        (root / record_key(r) / ".done").unlink(missing_ok=True)
    if stale:
        parts = [(stale[i::workers], str(root)) for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_dirs, parts))
    return {record_key(r): root / record_key(r) for r in recs}


def _fresh(dest: Path, rec: dict) -> bool:
    done = dest / ".done"
    return done.exists() and done.read_text() == json.dumps(rec, sort_keys=True)


def bundle_repo(rec: dict) -> str:
    """The community pipeline's repository for a package (`bundle_image_guess` without the host)."""
    return f"{BUNDLE_NS}/{rec['package']}"


def push_bundles(client, host: str, recs: list[dict], dirs: dict[str, Path],  # noqa: ANN001 - RegistryClient
                 known: dict[str, str], concurrency: int = 32) -> dict[str, str]:
    """content key -> manifest digest, pushing only the images not in `known` (blobs are skipped when
    present)."""
    from indexflow.registry.refs import ImageRef
    from sandbox.images import push_bundle_image

    def one(rec: dict) -> tuple[str, str]:
        ref = ImageRef.parse(f"{host}/{bundle_repo(rec)}:{seed_data.tag_of(rec['version_dir'])}")
        return content_key(rec), push_bundle_image(client, ref, dirs[record_key(rec)], seed_data.bundle_labels(rec))

    todo = [r for r in recs if content_key(r) not in known]
    with ThreadPoolExecutor(concurrency) as pool:
        return {**known, **dict(pool.map(one, todo))}


def pinned(host: str, rec: dict, digests: dict[str, str]) -> str:
    return f"{host}/{bundle_repo(rec)}@{digests[content_key(rec)]}"


def build_index_db(path: Path, host: str, recs: list[dict], dirs: dict[str, Path], digests: dict[str, str]) -> Path:
    """An index.db holding `recs` (semver mode: the real data is not a valid replaces graph)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    add_bundles(path, [load_bundle_dir(dirs[record_key(r)], pinned(host, r, digests)) for r in recs], mode="semver")
    return path


@dataclass
class ScaleSeed:
    """What the bench needs to run a merge on the seeded sandbox (saved as seed-scale.json)."""

    version: int
    registry: str
    source_index: str
    target_index: str
    binary_image: str
    source_bundles: int
    target_bundles: int
    missing_from_source: int
    sanitised: int
    dropped: int
    packages: int
    # the same data as the per-OCP catalogs hold it (only bundles valid for the target OCP)
    catalog_source_index: str = ""
    catalog_target_index: str = ""
    catalog_source_bundles: int = 0
    catalog_target_bundles: int = 0
    catalog_missing: int = 0
    git_url: str = ""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "ScaleSeed | None":
        try:
            data = json.loads(path.read_text())
            return cls(**data) if data.get("version") == SEED_VERSION else None
        except (OSError, ValueError, TypeError):
            return None


def seed_scale(client, host: str, artifacts, stack, state: Path, project: str,  # noqa: ANN001
               log=print) -> ScaleSeed:  # noqa: ANN001
    """Seed (or reuse the cached seed of) the full community set on `host`; Git is re-published each time."""
    import time

    sel = select()
    saved = ScaleSeed.load(state / "seed-scale.json")
    cached = saved is not None and saved.registry == host and client.exists(saved.target_index) \
        and client.exists(saved.source_index)
    t = time.monotonic()
    if not cached:
        saved = _seed_registry(client, host, artifacts, state, sel, log)
        log(f"seeded registry {host} in {time.monotonic() - t:.1f}s")
    else:
        log(f"reusing the cached seed on {host}")
    saved.git_url = stack.publish_git_repo(project, state / "git-seed")
    saved.save(state / "seed-scale.json")
    return saved


def _seed_registry(client, host: str, artifacts, state: Path, sel: Selection, log) -> ScaleSeed:  # noqa: ANN001
    """Bundle images, both index.dbs, index images, artifacts and the local Git seed repo."""
    import time

    t = time.monotonic()
    dirs = write_bundle_dirs(sel.target, state / "bundles")
    log(f"  bundle dirs: {len(dirs)} in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    digests_file = state / "digests.json"
    known = json.loads(digests_file.read_text()) if digests_file.exists() else {}
    digests = push_bundles(client, host, sel.target, dirs, _still_there(client, host, sel.target, known))
    digests_file.write_text(json.dumps(digests))
    log(f"  bundle images: {len(digests)} in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    work = state / "work"
    shutil.rmtree(work, ignore_errors=True)
    seeder = Seeder(client, host, artifacts, work)
    catalog = sel.for_ocp(TARGET_OCP)
    dbs = {name: build_index_db(state / "dbs" / f"{name}.db", host, recs, dirs, digests)
           for name, recs in (("source", sel.source), ("target", sel.target),
                              ("catalog-source", catalog.source), ("catalog-target", catalog.target))}
    log(f"  index.dbs: {len(sel.source)} + {len(sel.target)} + {len(catalog.source)} + {len(catalog.target)} "
        f"bundles in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    indexes = {name: publish(seeder, db, tag, ocp) for name, db, tag, ocp in (
        ("source", dbs["source"], SOURCE_OCP, SOURCE_OCP), ("target", dbs["target"], TARGET_OCP, TARGET_OCP),
        ("catalog-source", dbs["catalog-source"], f"catalog-{SOURCE_OCP}", SOURCE_OCP),
        ("catalog-target", dbs["catalog-target"], f"catalog-{TARGET_OCP}", TARGET_OCP))}
    shutil.rmtree(state / "git-seed", ignore_errors=True)
    write_git_branches(state / "git-seed", {SOURCE_OCP: indexes["catalog-source"][1],
                                            TARGET_OCP: indexes["catalog-target"][1]}, ("seed", "seed@localhost"))
    log(f"  index images, artifacts, git seed in {time.monotonic() - t:.1f}s")
    shutil.rmtree(work, ignore_errors=True)
    return ScaleSeed(SEED_VERSION, host, indexes["source"][0], indexes["target"][0], seeder.binary_image(),
                     len(sel.source), len(sel.target), len(sel.missing_from_source), len(sel.sanitised),
                     len(sel.dropped), len({r["package"] for r in sel.target}),
                     indexes["catalog-source"][0], indexes["catalog-target"][0], len(catalog.source),
                     len(catalog.target), len(catalog.missing_from_source))


def publish(seeder: Seeder, db: Path, tag: str, ocp: str) -> tuple[str, Path]:
    """Index image `tag` (labelled `ocp`) with /configs, and its canonical index.db artifact."""
    from indexflow.catalog.migrate import migrate
    from indexflow.merge import plan

    configs = seeder.work / f"configs-{tag}"
    migrate(db, configs, level=plan.migrate_level(ocp))
    pullspec = seeder.index_image(tag, configs, ocp)
    seeder.artifacts.push(seeder.artifacts.canonical_ref(pullspec), db, {"request_id": "seed", "request_type": "seed"})
    return pullspec, configs


def _still_there(client, host: str, recs: list[dict], known: dict[str, str]) -> dict[str, str]:  # noqa: ANN001
    """The cached digests, trusted only if the registry still has a sample of them (storage may be new)."""
    sample = [r for r in recs if content_key(r) in known][:: max(1, len(known) // 20)]
    if not sample or not all(client.exists(pinned(host, r, known)) for r in sample):
        return {}
    return known


class ProxiedEnv(SandboxEnv):
    """The demo's SandboxEnv with every remote reached through a FaultProxy (registry, git + GitLab,
    Kubernetes API), so benches can add distance and tests can inject faults. The registry proxy
    keeps its port between runs: the cached seed's pullspecs name it."""

    proxies: dict = {}
    scale_state: Path | None = None

    @property
    def proxy(self):  # noqa: ANN201 - FaultProxy
        return self.proxies["registry"]

    @property
    def registry_host(self) -> str:
        return self.proxy.host

    @property
    def registry_url(self) -> str:
        return self.proxy.url

    @property
    def git_url(self) -> str:
        return self.stack.git_repo_url(GIT_PROJECT).replace(self.stack.git.url, self.proxies["git"].url)

    @property
    def gitlab_url(self) -> str:
        return self.proxies["git"].url

    @classmethod
    @contextmanager
    def up(cls, state: Path) -> Iterator["ProxiedEnv"]:  # type: ignore[override]
        """Stack (storage under `state/stack`), proxies in front of it, clients through the proxies."""
        from indexflow.registry.artifacts import IndexDbArtifacts
        from indexflow.registry.client import RegistryClient
        from sandbox.faultproxy import FaultProxy
        from sandbox.stack import Stack

        stack = Stack.up(state / "stack")
        env = cls(state / "stack", stack)
        env.scale_state, env.proxies = state, {}
        try:
            env.proxies["registry"] = _proxy_on_saved_port(FaultProxy, stack.registry.host, state / "proxy-port")
            for name, url in (("git", stack.git.url), ("kube", stack.kube_url)):
                env.proxies[name] = FaultProxy(url.split("://", 1)[1]).start()
            env.registry_client = RegistryClient(insecure=(env.proxy.host, stack.registry.host))
            # the Konflux stand-in pulls the binary image by its (proxied) name: plain HTTP there too
            stack.builder.client = RegistryClient(insecure=(stack.registry.host, env.proxy.host))
            env.artifacts = IndexDbArtifacts(env.registry_client, env.proxy.host, cache_dir=state / "seed-artifacts")
            yield env
        finally:
            if env.registry_client is not None:
                env.registry_client.close()
            for proxy in env.proxies.values():
                proxy.stop()
            stack.down()

    def seed_scale(self) -> ScaleSeed:
        """The full community seed (cached under the state dir); `seed()` is the demo's small one."""
        self.seeded = seed_scale(self.registry_client, self.registry_host, self.artifacts, self.stack,
                                 self.scale_state, GIT_PROJECT)
        return self.seeded

    def seed_db(self, name: str) -> Path:
        """An index.db the scale seed built (source, target, catalog-source, catalog-target)."""
        return self.scale_state / "dbs" / f"{name}.db"

    def settings(self, **overrides: object):  # noqa: ANN201 - MergeSettings
        """The demo settings, plus the registry behind the proxy (Konflux pushes its builds there)."""
        overrides.setdefault("insecure_registries", [self.registry_host, self.stack.registry.host])
        return super().settings(**overrides)

    def save_blocks(self, name: str, **overrides: object) -> str:
        """The demo's blocks, with the Kubernetes credentials pointing at the Kubernetes proxy."""
        import yaml
        from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

        super().save_blocks(name, **overrides)
        config = yaml.safe_load(Path(self.stack.kubeconfig_path).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.proxies["kube"].url
        path = self.state_dir / "kubeconfig-proxied.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(path)) \
            .save(self._blocks["kubernetes"], overwrite=True)
        return name


def _proxy_on_saved_port(factory, upstream: str, port_file: Path):  # noqa: ANN001, ANN202
    """A started proxy on the port of the last run when it is free (else any port, saved for next time)."""
    saved = int(port_file.read_text()) if port_file.exists() else 0
    try:
        proxy = factory(upstream, port=saved).start()
    except RuntimeError:
        proxy = factory(upstream).start()
    port_file.write_text(str(proxy.port))
    return proxy
