"""Flow variants the main e2e module does not reach: a multi-arch build, a binaryless (scratch) build
and its refusals, and an index.db artifact that moves while the merge pulls it.

Each test works on private copies of the seeded indexes (image + canonical index.db artifact) under
tags of its own, so the other e2e tests see the seed unchanged. Expectations come from what the
test itself built (arches, labels, layers), read back over plain HTTP, never from the product.
"""

from __future__ import annotations

import itertools

import httpx
import pytest

from tests.e2e.conftest import BLOCK, E2E
from tests.e2e.test_merge_e2e import INDEX_TYPES, OCP_LABEL, SCOPE_LABEL, direct, merge, published

pytestmark = pytest.mark.e2e
SOURCE_ARCHES, TARGET_ARCHES = ("amd64", "arm64"), ("amd64", "ppc64le")
BINARY_ARCHES = ("amd64", "arm64", "ppc64le", "s390x")
_tags = itertools.count(1)


def _private_index(sb: E2E, seeded: str, tag: str, ocp: str, arches: tuple[str, ...], media_type: str) -> str:
    """A multi-arch copy of a seeded index (binary layer only; the merge reads the index.db artifact)
    under `tag`, with the seeded index.db pushed as its canonical artifact; the pullspec via the proxy."""
    from indexflow.merge import plan
    from indexflow.registry.refs import ImageRef
    from sandbox.images import build_index, tar_gz
    from sandbox.seed import BINARY_LAYER_FILES, INDEX_REPO

    env = sb.env
    ref = ImageRef.parse(f"{env.registry_host}/{INDEX_REPO}:{tag}")
    labels = {plan.VERSION_LABEL: ocp, plan.SCOPE_LABEL: "prod"}
    build_index(env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)], labels, arches, media_type)
    pulled = env.artifacts.pull(env.artifacts.canonical_ref(seeded))
    env.artifacts.push(env.artifacts.canonical_ref(str(ref)), pulled.path, {"request_id": f"private-{tag}"})
    return sb.via_proxy(str(ref))


@pytest.fixture(scope="module")
def multiarch(e2e: E2E) -> dict[str, str]:
    """Private multi-arch source (OCI index, v4.16) and target (Docker list, v4.17), and a binary image
    offering a superset of their arches; a settings block that builds from that binary image."""
    from indexflow.registry.client import DOCKER_LIST, OCI_INDEX
    from indexflow.registry.refs import ImageRef
    from sandbox.images import build_index, tar_gz
    from sandbox.seed import BINARY_LAYER_FILES

    n = next(_tags)
    binary = f"{e2e.env.registry_host}/rh-osbs/variants-binary:v4.17-{n}"
    build_index(e2e.env.registry_client, ImageRef.parse(binary), [tar_gz(BINARY_LAYER_FILES)],
                {"name": "ose-operator-registry"}, BINARY_ARCHES)
    return {"source": _private_index(e2e, e2e.seed.source_index, f"ma-src-{n}", "v4.16", SOURCE_ARCHES, OCI_INDEX),
            "target": _private_index(e2e, e2e.seed.target_index, f"ma-tgt-{n}", "v4.17", TARGET_ARCHES,
                                     DOCKER_LIST),
            "block": e2e.save_block("e2e-multiarch", binary_image_config={"prod": {"v4.16": binary,
                                                                                    "v4.17": binary}}),
            "scratch_block": e2e.save_block("e2e-scratch", binary_image_config={"prod": {"v4.16": "scratch",
                                                                                          "v4.17": "scratch"}})}


def images_of(sb: E2E, pullspec: str) -> dict[str, dict]:
    """{arch: {"config": ..., "layers": n}} of every image behind a tag, read over plain HTTP."""
    repo, tag = direct(sb, pullspec).split("/", 1)[1].rsplit(":", 1)
    accept = ", ".join([*INDEX_TYPES, "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])
    found: dict[str, dict] = {}
    with httpx.Client(base_url=f"{sb.env.registry_url}/v2/{repo}", timeout=10, headers={"Accept": accept}) as http:
        top = http.get(f"/manifests/{tag}").raise_for_status().json()
        children = [m["digest"] for m in top.get("manifests", [])] or [None]
        for child in children:
            manifest = http.get(f"/manifests/{child}").raise_for_status().json() if child else top
            config = http.get(f"/blobs/{manifest['config']['digest']}").raise_for_status().json()
            found[config["architecture"]] = {"config": config, "layers": len(manifest["layers"])}
    return found


def test_multi_arch_indexes_build_an_index_of_the_union_of_their_arches(sandbox: E2E, multiarch: dict):
    rid = sandbox.request_id("multiarch")
    state = merge(sandbox, source_from_index=multiarch["source"], target_index=multiarch["target"],
                  settings_block=multiarch["block"], request_id=rid)
    assert state.is_completed(), state.message
    output = state.result()["output_pullspecs"][0]
    labels, arches = published(sandbox, output)
    assert arches == set(SOURCE_ARCHES) | set(TARGET_ARCHES)  # not s390x: no index has it
    assert (labels.get(OCP_LABEL), labels.get(SCOPE_LABEL)) == ("v4.17", "prod")
    images = images_of(sandbox, output)
    assert set(images) == arches, "an index entry's platform does not match its image's config"
    assert all(image["layers"] == 2 for image in images.values()), "FROM the binary image + /configs"


def test_binaryless_build_is_amd64_only_without_a_binary_layer(sandbox: E2E, multiarch: dict):
    rid = sandbox.request_id("scratch")
    state = merge(sandbox, source_from_index=multiarch["source"], target_index=multiarch["target"],
                  settings_block=multiarch["scratch_block"], binary_image="scratch", request_id=rid)
    assert state.is_completed(), state.message
    output = state.result()["output_pullspecs"][0]
    images = images_of(sandbox, output)
    assert set(images) == {"amd64"}, f"scratch builds only amd64, not {sorted(images)}"
    assert images["amd64"]["layers"] == 1, "a binaryless image holds only its /configs layer"
    assert images["amd64"]["config"]["config"]["Labels"][OCP_LABEL] == "v4.17"


@pytest.mark.parametrize(("scratch_configured", "requested", "sentence"), [
    (False, "scratch", "The index image should not be binaryless for v4.17."),
    (True, "{binary}", "The index image must be built as a binaryless for v4.17."),
], ids=["scratch-not-configured", "binary-where-scratch-is-required"])
def test_binaryless_mismatch_is_refused_in_one_sentence(sandbox: E2E, multiarch: dict, scratch_configured: bool,
                                                        requested: str, sentence: str):
    before = sandbox.remote_state()
    state = merge(sandbox, source_from_index=multiarch["source"], target_index=multiarch["target"],
                  settings_block=multiarch["scratch_block"] if scratch_configured else BLOCK,
                  binary_image=requested.format(binary=sandbox.seed.binary_image),
                  request_id=sandbox.request_id("scratch-refused"))
    assert state.is_failed()
    assert sentence in state.message and "\n" not in state.message.strip(), state.message
    sandbox.remote_state().assert_same(before)


def test_index_db_that_changes_while_pulled_stops_the_merge(sandbox: E2E):
    """The artifact tag is re-pointed (as a concurrent merge's push would) between the merge's
    resolve of its digest and its pull: the merge must not use a db it did not resolve."""
    from indexflow.merge import plan
    from indexflow.registry.refs import ImageRef
    from sandbox.images import build_image, tar_gz
    from sandbox.seed import BINARY_LAYER_FILES, INDEX_REPO

    env, tag = sandbox.env, f"moving-{next(_tags)}"
    ref = ImageRef.parse(f"{env.registry_host}/{INDEX_REPO}:{tag}")
    build_image(env.registry_client, ref, [tar_gz(BINARY_LAYER_FILES)],
                {plan.VERSION_LABEL: "v4.17", plan.SCOPE_LABEL: "prod"})
    db_ref = env.artifacts.canonical_ref(str(ref))
    db = env.artifacts.pull(env.artifacts.canonical_ref(sandbox.seed.target_index)).path
    env.artifacts.push(db_ref, db, {"request_id": f"{tag}-first"})
    before = sandbox.remote_state()
    moved: list[str] = []

    def someone_pushes() -> None:
        moved.append(env.artifacts.push(db_ref, db, {"request_id": f"{tag}-second"}))

    artifact_path = rf"^/v2/index-db/manifests/{db_ref.rsplit(':', 1)[1]}$"
    hook = sandbox.registry_proxy.add_fault("call", artifact_path, method="HEAD", nth=2, call=someone_pushes)
    state = merge(sandbox, target_index=sandbox.via_proxy(str(ref)), request_id=sandbox.request_id("moving"))
    assert hook.injected == 1 and moved, f"the tag was never re-pointed ({hook.matched} HEADs)"
    assert state.is_failed()
    expected = f"index.db artifact {sandbox.via_proxy(db_ref)} changed while it was pulled; retry the merge"
    assert expected in state.message and "\n" not in state.message.strip(), state.message
    after = sandbox.remote_state()
    assert after.tags.pop(f"index-db:{db_ref.rsplit(':', 1)[1]}") == moved[0]
    before.tags.pop(f"index-db:{db_ref.rsplit(':', 1)[1]}")
    after.assert_same(before)
