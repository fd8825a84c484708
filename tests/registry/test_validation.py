"""Bundle validation and label reads on the real registry: all failures in one error, request
budgets cold and warm (persistent caches under $INDEXFLOW_CACHE_DIR), tags always re-resolved."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from indexflow.registry.validation import (
    DigestCache,
    LabelCache,
    raise_for_missing,
    read_bundle_labels,
    validate_pullspecs,
)
from sandbox.images import build_image, build_index, tar_gz

OCP = "com.redhat.openshift.versions"
LAYER = tar_gz({"manifests/csv.yaml": b"kind: ClusterServiceVersion\n"})


@pytest.fixture(scope="module")
def bundles(local_registry) -> dict[str, list[str]]:  # noqa: ANN001
    """40 bundle images: digest pullspecs (as index.dbs hold them) and the same images by tag."""
    ns = f"{local_registry.host}/v{uuid.uuid4().hex[:8]}"
    digests, tags = [], []
    with RegistryClient(insecure=(local_registry.host,)) as client:
        for i in range(40):
            ref = ImageRef.parse(f"{ns}/op{i % 8}-bundle:v0.{i}")
            labels = {OCP: f"v4.{10 + i % 8}", "operators.operatorframework.io.bundle.package.v1": f"op{i % 8}"}
            digests.append(str(ref.with_tag(None).with_digest(build_image(client, ref, [LAYER], labels))))
            tags.append(str(ref))
        multi = ImageRef.parse(f"{ns}/multi-bundle:v1")
        build_index(client, multi, [LAYER], {OCP: "v4.15"}, ["amd64", "arm64"])
    return {"digests": digests, "tags": tags, "index": [str(multi)], "ns": [ns]}


def _fresh(local_registry) -> RegistryClient:  # noqa: ANN001
    return RegistryClient(insecure=(local_registry.host,))


def test_every_failure_reported_with_reason(local_registry, bundles: dict) -> None:  # noqa: ANN001
    ns = bundles["ns"][0]
    bad = {f"{ns}/op0-bundle:nope": "not found",
           f"{ns}/never@sha256:{'0' * 64}": "not found",
           "Not A Pullspec": "invalid image reference"}
    with _fresh(local_registry) as client:
        missing = validate_pullspecs(client, [*bundles["digests"], *bad, *bundles["digests"][:5]],
                                     concurrency=8, cache=DigestCache.memory())
    assert set(missing) == set(bad)
    for pullspec, reason in bad.items():
        assert missing[pullspec].startswith(reason)
    with pytest.raises(RegistryError) as info:
        raise_for_missing(missing)
    assert str(info.value).startswith("3 bundle image(s) cannot be used: ")
    assert all(p in str(info.value) for p in bad)
    raise_for_missing({})  # nothing missing: no error


def test_cold_then_warm_request_budget(local_registry, bundles: dict, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("INDEXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    pullspecs = bundles["digests"]
    with _fresh(local_registry) as client:
        assert validate_pullspecs(client, pullspecs, concurrency=8) == {}
        labels = read_bundle_labels(client, pullspecs, concurrency=8)
        cold = client.stats.requests - 1  # minus the one scheme probe
    assert cold <= 2 * len(pullspecs)  # manifest GET remembered, then only the config blob
    assert labels[pullspecs[3]][OCP] == "v4.13"
    assert (tmp_path / "cache" / "registry-cache.sqlite").is_file()

    with _fresh(local_registry) as client:  # new process state: only the files on disk remain
        cache_file = tmp_path / "cache" / "registry-cache.sqlite"
        assert validate_pullspecs(client, pullspecs, cache=DigestCache(cache_file)) == {}
        assert read_bundle_labels(client, pullspecs, cache=LabelCache(cache_file)) == labels
        assert client.stats.requests == 0


def test_old_confirmations_are_checked_again(local_registry, bundles: dict) -> None:  # noqa: ANN001
    cache = DigestCache.memory()
    pullspec = bundles["digests"][0]
    cache.put(f"{ImageRef.parse(pullspec).name}@{ImageRef.parse(pullspec).digest}", "0")  # confirmed in 1970
    with _fresh(local_registry) as client:
        assert validate_pullspecs(client, [pullspec], cache=cache) == {}
        assert client.stats.by_method().get("GET") == 2  # probe + the manifest: asked again
    assert cache.confirmed(ImageRef.parse(pullspec))


def test_tags_are_always_resolved_again(local_registry, bundles: dict) -> None:  # noqa: ANN001
    digest_cache, label_cache = DigestCache.memory(), LabelCache.memory()
    tags = bundles["tags"][:10]
    with _fresh(local_registry) as client:
        validate_pullspecs(client, tags, cache=digest_cache)
        read_bundle_labels(client, tags, cache=label_cache)
    with _fresh(local_registry) as client:
        validate_pullspecs(client, tags, cache=digest_cache)
        assert client.stats.by_method().get("GET", 0) == 1 + len(tags)  # probe + one GET per tag
        client.stats.reset()
        read_bundle_labels(client, tags, cache=label_cache)
        assert client.stats.by_method() == {"HEAD": len(tags)}  # labels from cache, by resolved digest
    retagged = ImageRef.parse(tags[0])
    with _fresh(local_registry) as client:
        client.copy(ImageRef.parse(tags[1]), retagged)  # the tag moves to another image
        assert read_bundle_labels(client, [tags[0]], cache=label_cache)[tags[0]][OCP] == "v4.11"


def test_labels_of_a_multi_arch_bundle_and_failures(local_registry, bundles: dict) -> None:  # noqa: ANN001
    with _fresh(local_registry) as client:
        assert read_bundle_labels(client, bundles["index"], cache=LabelCache.memory()) == \
            {bundles["index"][0]: {OCP: "v4.15"}}
        gone = f"{bundles['ns'][0]}/op1-bundle:gone"
        with pytest.raises(RegistryError, match=r"1 bundle image\(s\) cannot be used: .*op1-bundle:gone \(not found\)"):
            read_bundle_labels(client, [bundles["digests"][0], gone], cache=LabelCache.memory())


def test_unreadable_cache_file_is_a_cold_cache(tmp_path: Path, local_registry, bundles: dict) -> None:  # noqa: ANN001
    broken = tmp_path / "registry-cache.sqlite"
    broken.write_bytes(b"this is not sqlite" * 10)
    cache = DigestCache(broken)
    assert len(cache) == 0
    with _fresh(local_registry) as client:
        assert validate_pullspecs(client, bundles["digests"][:3], cache=cache) == {}


def test_a_cache_dir_that_cannot_be_created_is_a_cold_cache(tmp_path: Path, local_registry, bundles: dict) -> None:  # noqa: ANN001
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    cache = DigestCache(blocked / "cache" / "registry-cache.sqlite")
    assert len(cache) == 0
    with _fresh(local_registry) as client:
        assert validate_pullspecs(client, bundles["digests"][:2], cache=cache) == {}  # flush fails quietly
    assert blocked.read_text() == ""


def test_malformed_cache_entries_are_misses(tmp_path: Path, local_registry, bundles: dict) -> None:  # noqa: ANN001
    """Rows another version (or a damaged disk) left: each one is asked again, none fails the run."""
    path, pullspecs = tmp_path / "registry-cache.sqlite", bundles["digests"][:4]
    refs = [ImageRef.parse(p) for p in pullspecs]
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE confirmed (ref TEXT PRIMARY KEY, seen REAL)")
        con.execute("CREATE TABLE labels (digest TEXT PRIMARY KEY, labels TEXT)")
        con.execute("INSERT INTO confirmed VALUES (?, 'yesterday')", (f"{refs[0].name}@{refs[0].digest}",))
        con.executemany("INSERT INTO labels VALUES (?, ?)", [
            (refs[0].digest, "{not json"), (refs[1].digest, '["a"]'), (refs[2].digest, '{"%s": 4.17}' % OCP)])
    with _fresh(local_registry) as client:
        assert validate_pullspecs(client, pullspecs[:1], cache=DigestCache(path)) == {}
        assert client.stats.by_method().get("GET") == 2  # probe + the manifest: asked again
        labels = read_bundle_labels(client, pullspecs, cache=LabelCache(path))
    assert [labels[p][OCP] for p in pullspecs] == ["v4.10", "v4.11", "v4.12", "v4.13"]  # as built
