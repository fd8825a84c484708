"""Bundle pullspec validation at catalog scale: IIB's way vs indexflow, cold and warm.

    .venv/bin/python bench/validate_bundles.py [--bundles 5000] [--threads 5]

Starts its own docker-registry on loopback and pushes N small bundle images named after
../shared/corpus/bundles/bundles.jsonl (`bundle_image_guess`, rewritten onto the local registry):
one shared layer blob (mounted into each repository), a unique config per bundle carrying its real
labels. Then, in one run, over the digest pullspecs an index.db holds:

  (a) IIB: `skopeo inspect --raw` as a subprocess per pullspec on 5 threads (validation only);
  (b) indexflow cold: fresh cache dir, new client: validation, then validation + label read;
  (c) indexflow warm: new client, caches loaded from the files (b) left: validation + labels.

Prints the times, the ratios a/b and a/c (targets >= 8 and >= 100) and HTTP requests per bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexflow.registry.client import OCI_MANIFEST, RegistryClient, sha256  # noqa: E402
from indexflow.registry.refs import ImageRef  # noqa: E402
from indexflow.registry.validation import (  # noqa: E402
    DB_NAME,
    DigestCache,
    LabelCache,
    read_bundle_labels,
    validate_pullspecs,
)
from sandbox.images import CONFIG, LAYER_GZIP, image_config, tar_gz  # noqa: E402
from sandbox.registry import LocalRegistry  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "bundles" / "bundles.jsonl"
OCP_LABEL = "com.redhat.openshift.versions"
PACKAGE_LABEL = "operators.operatorframework.io.bundle.package.v1"


def corpus_records(limit: int) -> list[dict]:
    """The first `limit` records with distinct bundle image names."""
    seen: dict[str, dict] = {}
    with CORPUS.open() as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("bundle_image_guess") and rec["bundle_image_guess"] not in seen:
                seen[rec["bundle_image_guess"]] = rec
            if len(seen) == limit:
                break
    return list(seen.values())


def local_name(guess: str, host: str) -> ImageRef:
    ref = ImageRef.parse(guess)
    return ImageRef(host, ref.repository, ref.tag)


def seed(client: RegistryClient, host: str, records: list[dict], workers: int = 32) -> list[str]:
    """Push one bundle image per record; returns digest pullspecs (what an index.db holds)."""
    layer = tar_gz({"manifests/bundle.csv.yaml": b"kind: ClusterServiceVersion\n",
                    "metadata/annotations.yaml": b"annotations: {}\n"})
    base = ImageRef(host, "bench/base-layer")
    layer_digest = client.push_blob(base, layer)
    repos = sorted({local_name(r["bundle_image_guess"], host).repository for r in records})
    with ThreadPoolExecutor(workers) as pool:  # one mount per repository, not one upload per image
        list(pool.map(lambda repo: client.mount_blob(ImageRef(host, repo), layer_digest, base.repository), repos))

    def push(rec: dict) -> str:
        ref = local_name(rec["bundle_image_guess"], host)
        labels = {PACKAGE_LABEL: rec["package"], OCP_LABEL: rec.get("ocp_versions") or "",
                  "bench.csv-name": rec["csv_name"]}  # real bundles differ in content; keep digests unique
        config = image_config([layer], labels)
        repo = ref.in_repository(ref.repository)
        client.upload_blob(repo, config, sha256(config))  # a fresh config: no existence check needed
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": sha256(config), "size": len(config)},
                    "layers": [{"mediaType": LAYER_GZIP, "digest": layer_digest, "size": len(layer)}]}
        digest = client.push_manifest(ref, json.dumps(manifest).encode(), OCI_MANIFEST)
        return str(ref.with_tag(None).with_digest(digest))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(push, records))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def skopeo_way(pullspecs: list[str], threads: int) -> list[str]:
    """IIB's validation: one `skopeo inspect --raw` subprocess per pullspec; returns failures."""
    def inspect(pullspec: str) -> str | None:
        proc = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{pullspec}"],
                              capture_output=True, timeout=120)
        return None if proc.returncode == 0 else pullspec

    with ThreadPoolExecutor(threads) as pool:
        return [p for p in pool.map(inspect, pullspecs) if p]


def indexflow_run(host: str, pullspecs: list[str], cache_file: Path, labels: bool,
                  concurrency: int) -> tuple[int, dict, dict]:
    """A new client (empty memory) and caches read from `cache_file`, as a new process would see."""
    with RegistryClient(insecure=(host,)) as client:
        missing = validate_pullspecs(client, pullspecs, concurrency=concurrency, cache=DigestCache(cache_file))
        read = read_bundle_labels(client, pullspecs, concurrency=concurrency,
                                  cache=LabelCache(cache_file)) if labels else {}
        return client.stats.requests, missing, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=5, help="skopeo threads (IIB's parallel_threads)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="indexflow requests in flight (loopback on 2 cores: more threads only contend)")
    args = parser.parse_args()

    records = corpus_records(args.bundles)
    with LocalRegistry() as registry, RegistryClient(insecure=(registry.host,)) as seeder, \
            tempfile.TemporaryDirectory(prefix="indexflow-bench-") as tmp:
        seconds, pullspecs = timed(lambda: seed(seeder, registry.host, records))
        n = len(pullspecs)
        load = os.getloadavg()[0]
        print(f"seeded {n} bundle images ({seeder.stats.requests} requests) in {seconds:.1f}s on {registry.host}")

        t_a, failed = timed(lambda: skopeo_way(pullspecs, args.threads))
        assert not failed, f"skopeo could not inspect {len(failed)} images, e.g. {failed[0]}"

        def run(cache: str, labels: bool) -> tuple[float, tuple[int, dict, dict]]:
            return timed(lambda: indexflow_run(registry.host, pullspecs, Path(tmp) / cache / DB_NAME, labels,
                                               args.concurrency))

        t_b_val, (req_b_val, missing, _) = run("validation-only", False)
        t_b, (req_b, missing_b, labels) = run("cache", True)
        t_c, (req_c, missing_c, labels_c) = run("cache", True)
        assert not missing and not missing_b and not missing_c and labels == labels_c and len(labels) == n

        print(f"{os.cpu_count()} CPUs, load average {load:.1f} -> {os.getloadavg()[0]:.1f} during the run; "
              f"indexflow concurrency {args.concurrency}")
        print(f"(a) IIB way, skopeo inspect --raw x {n} on {args.threads} threads: {t_a:8.2f}s")
        print(f"(b) indexflow cold, validation only:                  {t_b_val:8.2f}s  "
              f"{req_b_val} requests ({req_b_val / n:.2f}/bundle)")
        print(f"(b) indexflow cold, validation + labels:              {t_b:8.2f}s  "
              f"{req_b} requests ({req_b / n:.2f}/bundle)")
        print(f"(c) indexflow warm, validation + labels:              {t_c:8.3f}s  "
              f"{req_c} requests ({req_c / n:.3f}/bundle)")
        print(f"a/b = {t_a / t_b_val:.1f} (validation only; target >= 8), {t_a / t_b:.1f} with labels too")
        print(f"a/c = {t_a / t_c:.0f} (target >= 100; (c) does validation + labels)")


if __name__ == "__main__":
    main()
