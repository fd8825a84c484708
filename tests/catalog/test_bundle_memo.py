"""One add decodes a repeated manifest file once (bundle.ManifestMemo), and a manifest field of the
wrong type is one sentence naming the file, never a traceback.

The oracle for the memo is the same bundles loaded without one: the rows must not change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexflow.catalog.bundle import ManifestMemo, load_bundle_dir
from tests.catalog.test_cli import _cli

OPERATORS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "bundles" / "operators"


def _corpus_dirs() -> list[Path]:
    return sorted(p.parent for p in OPERATORS.glob("*/*/manifests"))


def test_corpus_bundles_load_the_same_with_one_memo_and_repeats_are_decoded_once() -> None:
    dirs = _corpus_dirs()
    assert len(dirs) > 100
    memo = ManifestMemo()
    with_memo = [load_bundle_dir(d, f"example.com/{d.parent.name}:{d.name}", memo) for d in dirs]
    without = [load_bundle_dir(d, f"example.com/{d.parent.name}:{d.name}") for d in dirs]
    assert with_memo == without
    crds = {}  # content -> paths: a CRD shipped unchanged in several versions
    for d in dirs:
        for f in (d / "manifests").iterdir():
            if "CustomResourceDefinition" in f.read_text(errors="replace")[:2000]:
                crds.setdefault(f.read_bytes(), []).append(f)
    repeated = [data for data, paths in crds.items() if len(paths) > 1]
    assert repeated, "the corpus ships unchanged CRDs across versions"
    kept = [memo.get(data) for data in repeated]
    assert all(k is not None and k.kind == "CustomResourceDefinition" and k.csv is None for k in kept)


def _bundle(root: Path, crd_group: str) -> Path:
    """A bundle whose CSV owns one CRD of `crd_group`; the CRD file is always named crd.yaml."""
    shutil.copytree(OPERATORS / "apicurito" / "0.1.0", root)
    for f in (root / "manifests").glob("apicur.io_*"):
        f.unlink()
    (root / "manifests" / "crd.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        f"metadata:\n  name: apicuritoes.{crd_group}\n"
        f"spec:\n  group: {crd_group}\n  names:\n    kind: Apicurito\n    plural: apicuritoes\n"
        "  versions:\n  - name: v1alpha1\n")
    return root


def test_files_are_known_by_their_content_not_their_name(tmp_path: Path) -> None:
    memo = ManifestMemo()
    one = load_bundle_dir(_bundle(tmp_path / "a", "apicur.io"), "a", memo)
    assert [(g, v, k) for g, v, k, _ in one.provided] == [("apicur.io", "v1alpha1", "Apicurito")]
    with pytest.raises(Exception, match=r"couldn't find apicur.io/v1alpha1/Apicurito .* found: map\[\{other.io"):
        load_bundle_dir(_bundle(tmp_path / "b", "other.io"), "b", memo)


def test_the_memo_keeps_to_its_budget(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "a", "apicur.io")
    crd = (bundle / "manifests" / "crd.yaml").read_bytes()
    memo = ManifestMemo(budget=8 * (2 * len(crd) + 100))
    load_bundle_dir(bundle, "a", memo)
    assert memo.get(crd) is not None  # small enough: kept (the CSV never is)
    small = ManifestMemo(budget=len(crd))
    load_bundle_dir(bundle, "a", small)
    assert small.get(crd) is None  # an entry over an eighth of the budget is not kept


@pytest.mark.parametrize("file, text, where", [
    ("crd.yaml", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec: [1]\n",
     "manifests/crd.yaml"),
    ("crd.yaml", "apiVersion: 1\nkind: CustomResourceDefinition\nspec: {versions: [{name: v1}]}\n",
     "manifests/crd.yaml"),
    ("apicuritooperator.clusterserviceversion.yaml",
     "apiVersion: operators.coreos.com/v1alpha1\nkind: ClusterServiceVersion\nmetadata: {name: x.v1}\nspec: [1]\n",
     "the ClusterServiceVersion"),
    ("apicuritooperator.clusterserviceversion.yaml",
     "kind: ClusterServiceVersion\nmetadata: {name: x.v1}\n"
     "spec: {install: {strategy: deployment, spec: {deployments: [x]}}}\n",
     "the ClusterServiceVersion"),
])
def test_a_field_of_the_wrong_type_is_one_sentence_from_db_add(tmp_path: Path, file: str, text: str,
                                                               where: str) -> None:
    bundle = _bundle(tmp_path / "b", "apicur.io")
    (bundle / "manifests" / file).write_text(text)
    rc, out, err = _cli("db", "add", tmp_path / "index.db", "--bundle", f"example.com/b:1={bundle}")
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"error loading bundle example.com/b:1: {where}: a field has the wrong type" in err
