"""The sandbox's catalog data: a slice of real community-operators bundles (../shared/corpus).

`refresh()` re-selects the slice from the corpus and writes `sandbox/data/seed-bundles.jsonl`
(committed, so a fresh clone needs no corpus); `load()` reads it back. Selection: per package, the
replaces chain down from the newest bundle (up to 15 bundles of one channel) whose OCP labels allow
v4.17 or are absent, plus one package that keeps a real OCP-incompatible bundle in its chain.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import yaml

from indexflow.catalog.semver_go import SemverError, Version
from indexflow.merge.ocp import is_bundle_version_valid

DATA = Path(__file__).parent / "data" / "seed-bundles.jsonl"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "bundles" / "bundles.jsonl"
OCP = "v4.17"
WITH_INVALID = "annotationlab"  # its 4.8.5 says v4.11-v4.12: invalid in a v4.17 index
KEEP = ("package", "channels", "default_channel", "ocp_versions", "csv_name", "version", "version_dir",
        "replaces", "skips", "skipRange", "containerImage", "relatedImages", "installModes")


def _semver(rec: dict) -> Version | None:
    try:
        return Version.parse(rec.get("version") or "")
    except SemverError:
        return None


def _chain(records: list[dict], allow_invalid: bool) -> list[dict]:
    """Oldest-first replaces chain from the newest bundle, cut at the first unusable bundle."""
    by_name = {r["csv_name"]: r for r in records if r.get("csv_name")}
    usable = [r for r in records if _semver(r) and r.get("csv_name")]
    if not usable:
        return []
    head = max(usable, key=_semver)
    channel, chain, cur = head["channels"][0], [], head
    while cur and channel in cur["channels"] and len(chain) < 15:
        if not is_bundle_version_valid(cur.get("ocp_versions"), OCP, True) and not allow_invalid:
            break
        chain.append(cur)
        cur = by_name.get(cur.get("replaces"))
    names = {c["csv_name"] for c in chain}
    out = []
    for i, c in enumerate(reversed(chain)):
        rec = {k: c.get(k) for k in KEEP}
        rec.update(channels=[channel], default_channel=channel,
                   replaces=c.get("replaces") if i else None,
                   skips=[s for s in c.get("skips") or [] if s in names])
        out.append(rec)
    return out


def refresh(corpus: Path = CORPUS, packages: int = 45) -> int:
    """Re-select the slice from the corpus; returns the number of bundles written."""
    by_pkg: dict[str, list[dict]] = collections.defaultdict(list)
    for line in corpus.open():
        rec = json.loads(line)
        by_pkg[rec["package"]].append(rec)
    chains = []
    for pkg in sorted(by_pkg):
        chain = _chain(by_pkg[pkg], allow_invalid=pkg == WITH_INVALID)
        if len(chain) >= 3 and (len(chains) < packages or pkg == WITH_INVALID):
            chains.append(chain)
    rows = [json.dumps(r, sort_keys=True) for chain in chains for r in chain]
    DATA.write_text("\n".join(rows) + "\n")
    return len(rows)


def load() -> dict[str, list[dict]]:
    """Package -> bundles (oldest first, i.e. in replaces order)."""
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for line in DATA.read_text().splitlines():
        rec = json.loads(line)
        out[rec["package"]].append(rec)
    return dict(out)


def tag_of(version_dir: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in version_dir)[:128]


def bundle_labels(rec: dict) -> dict[str, str]:
    """The labels a real bundle image carries (annotations + OCP range)."""
    labels = {
        "operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
        "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
        "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
        "operators.operatorframework.io.bundle.package.v1": rec["package"],
        "operators.operatorframework.io.bundle.channels.v1": ",".join(rec["channels"]),
        "operators.operatorframework.io.bundle.channel.default.v1": rec["default_channel"],
        "com.redhat.delivery.operator.bundle": "true",
    }
    if rec.get("ocp_versions"):
        labels["com.redhat.openshift.versions"] = rec["ocp_versions"]
    return labels


def write_bundle_dir(rec: dict, dest: Path) -> Path:
    """A small but loadable registry+v1 bundle: the real CSV graph fields, no CRDs."""
    pkg, version = rec["package"], rec["version"]
    image = rec.get("containerImage") or f"quay.io/example/{pkg}:{version}"
    annotations = {"containerImage": image}
    if rec.get("skipRange"):
        annotations["olm.skipRange"] = rec["skipRange"]
    spec = {
        "displayName": pkg, "version": version,
        "installModes": [{"type": t, "supported": t in (rec.get("installModes") or ["AllNamespaces"])}
                         for t in ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")],
        "install": {"strategy": "deployment", "spec": {"deployments": [{
            "name": f"{pkg}-controller",
            "spec": {"selector": {"matchLabels": {"app": pkg}},
                     "template": {"metadata": {"labels": {"app": pkg}},
                                  "spec": {"containers": [{"name": "manager", "image": image}]}}}}]}},
        "relatedImages": [{"name": f"img{i}", "image": img}
                          for i, img in enumerate(rec.get("relatedImages") or []) if img],
    }
    if rec.get("replaces"):
        spec["replaces"] = rec["replaces"]
    if rec.get("skips"):
        spec["skips"] = rec["skips"]
    csv = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
           "metadata": {"name": rec["csv_name"], "annotations": annotations}, "spec": spec}
    (dest / "manifests").mkdir(parents=True, exist_ok=True)
    (dest / "metadata").mkdir(parents=True, exist_ok=True)
    (dest / "manifests" / f"{pkg}.clusterserviceversion.yaml").write_text(yaml.safe_dump(csv, sort_keys=True))
    ann = {k: v for k, v in bundle_labels(rec).items() if k.startswith("operators.operatorframework.io.bundle")}
    (dest / "metadata" / "annotations.yaml").write_text(yaml.safe_dump({"annotations": ann}, sort_keys=True))
    return dest


if __name__ == "__main__":
    print(f"{refresh()} bundles written to {DATA}")
