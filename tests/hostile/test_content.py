"""Hostile content (issue 10, content half): catalog trees, bundle directories and index.db files that
someone else controls. Each case runs the real command line in a child process under a memory and a
time ceiling (tests/hostile/harness.py) and proves: one sentence naming the input (no traceback, no
hang, no MemoryError), nothing written outside the case's output, and no secret in any output.

The secret is a fake registry credential planted in a docker config beside the tree, where the run's
own config used to live: a tree that links to it must not get it quoted in an error.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.hostile.harness import CaseDirs, assert_no_secret, one_sentence, run_cli, run_python, succeeded

FIX = Path(__file__).resolve().parents[1] / "fixtures"
OK_FBC = FIX / "fbc" / "validate" / "ok-simple"
ETCD = FIX / "catalog" / "bundles" / "etcd" / "0.6.1"
SOURCE_DB = FIX / "fbc" / "etcd-full.db"
SECRET = "hostile-s3cret-passw0rd"
MEMORY = 768 << 20  # a bomb that is expanded needs GBs; every refusal here fits easily
TIMEOUT = 60.0

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def _docker_config(where: Path) -> Path:
    """A docker config.json holding SECRET, as a run's credentials file would."""
    auth = base64.b64encode(f"robot:{SECRET}".encode()).decode()
    path = where / "docker-config.json"
    path.write_text(json.dumps({"auths": {"quay.io": {"auth": auth}}, "password": SECRET}))
    return path


def _tree(case: CaseDirs) -> Path:
    """A valid catalog tree `configs/` inside the case's output, credentials beside it."""
    configs = case.out / "configs"
    shutil.copytree(OK_FBC, configs)
    _docker_config(case.out)
    return configs


def _judge(case: CaseDirs, outcome, *fragments: str) -> str:  # noqa: ANN001 - harness Outcome
    sentence = one_sentence(outcome, *fragments)
    assert_no_secret(outcome, [SECRET])
    return sentence


# --- catalog trees (fbc validate / fbc merge, the Git checkout's configs/) ---------------------

def test_symlink_to_credentials_is_refused_not_quoted(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "leak").mkdir()
    (configs / "leak" / "catalog.json").symlink_to(case_dirs.out / "docker-config.json")
    watch = case_dirs.watch()
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/leak/catalog.json", "symbolic link")
    watch.assert_clean()


def test_merge_never_writes_through_a_symlink_out_of_the_tree(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    victim = case_dirs.home / "victim.json"
    victim.write_text("precious")
    shutil.rmtree(configs / "foo")
    (configs / "foo").mkdir()
    (configs / "foo" / "catalog.json").symlink_to(victim)  # the db's foo/catalog.json would land here
    watch = case_dirs.watch(configs)
    outcome = run_cli("fbc", "merge", str(OK_FBC), str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/foo/catalog.json", "symbolic link")
    assert victim.read_text() == "precious"
    watch.assert_clean()


def test_symlinked_directory_is_refused(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    outside = case_dirs.home / "elsewhere"
    shutil.copytree(OK_FBC / "foo", outside)
    (configs / "bar").symlink_to(outside, target_is_directory=True)
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/bar", "symbolic link")


def test_configs_root_that_is_a_symlink_is_refused(case_dirs: CaseDirs) -> None:
    real = _tree(case_dirs)
    link = case_dirs.out / "linked"
    link.symlink_to(real, target_is_directory=True)
    into = case_dirs.out / "into"
    into.mkdir()
    (into / "configs").symlink_to(real, target_is_directory=True)
    outcome = run_cli("fbc", "merge", str(OK_FBC), str(into / "configs"), env=case_dirs.env, memory=MEMORY,
                      timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs", "symbolic link")


def test_hard_link_to_outside_is_refused(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    os.link(case_dirs.out / "docker-config.json", configs / "foo" / "creds.json")
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/foo/creds.json", "hard link")


def test_fifo_in_the_tree_does_not_hang(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    os.mkfifo(configs / "foo" / "pipe.json")
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=20)
    _judge(case_dirs, outcome, "configs/foo/pipe.json", "FIFO")


def test_a_deep_tree_is_walked_without_recursion(case_dirs: CaseDirs) -> None:
    """300 levels under a recursion limit of 120: a recursive walker would die with RecursionError
    (a tree thousands deep is the same test; kept shallow so pytest can still delete it)."""
    configs = _tree(case_dirs)
    deep = configs
    for _ in range(300):
        deep = deep / "d"
        deep.mkdir()
    os.mkfifo(deep / "pipe")
    code = ("import sys\nfrom indexflow.app.cli import main\nimport indexflow.catalog.validate\n"
            f"sys.setrecursionlimit(120)\nsys.exit(main(['fbc', 'validate', {str(configs)!r}]))\n")
    outcome = run_python(code, env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/...", "/d/d/pipe is a FIFO")


def test_indexignore_negation_loads_the_json_and_yaml_files(case_dirs: CaseDirs) -> None:
    """`*` then `!*.json`, `!*.yaml`: opm (go-git's gitignore) reads the json/yaml files, nothing else;
    a broken catalog behind the negation must therefore be reported, and junk must not."""
    configs = _tree(case_dirs)
    (configs / ".indexignore").write_text("*\n!*.json\n!*.yaml\n")
    (configs / "foo" / "README.md").write_text("not a catalog {")
    succeeded(run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT))
    (configs / "bad.yaml").write_text("schema: olm.package\nname: Not_DNS\n")
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, 'invalid package name "Not_DNS"')


def test_alias_bomb_in_a_catalog_yaml(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "bomb.yaml").write_text("schema: olm.package\nname: bomb\n" + BOMB)
    assert len(BOMB) < 600
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "excessive aliasing")


def test_alias_bomb_in_a_catalog_yaml_through_merge(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "bomb.yaml").write_text("schema: olm.package\nname: bomb\n" + BOMB)
    outcome = run_cli("fbc", "merge", str(OK_FBC), str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/bomb.yaml", "excessive aliasing")


def test_json_nested_100k_deep_in_a_catalog(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "deep.json").write_text('{"schema": "olm.package", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "max depth")


def test_a_huge_name_is_quoted_only_as_an_excerpt(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "huge.json").write_text(json.dumps({"schema": "olm.package", "name": "N" * 100_000}))
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    assert len(_judge(case_dirs, outcome, "invalid package name")) < 1500


def test_object_without_schema_is_quoted_only_as_an_excerpt(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    body = {"note": "x" * 5000, "password": SECRET}
    (configs / "noschema.json").write_text(json.dumps(body))
    outcome = run_cli("fbc", "validate", str(configs), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    sentence = _judge(case_dirs, outcome, "missing root schema field")
    assert len(sentence) < 400


def test_catalog_file_over_the_size_cap(case_dirs: CaseDirs) -> None:
    configs = _tree(case_dirs)
    (configs / "big.json").write_text('{"schema": "olm.package", "name": "big", "pad": "' + "x" * 5000 + '"}')
    outcome = run_cli("fbc", "validate", str(configs), env={**case_dirs.env, "INDEXFLOW_MAX_MANIFEST_BYTES": "4096"},
                      memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "configs/big.json", "4096-byte limit")


# --- bundle directories (db add REF=DIR) -----------------------------------------------------

def _bundle(case: CaseDirs) -> Path:
    bundle = case.out / "bundle"
    shutil.copytree(ETCD, bundle)
    _docker_config(case.out)
    return bundle


def _add(case: CaseDirs, bundle: Path, env: dict | None = None, timeout: float = TIMEOUT):  # noqa: ANN202
    return run_cli("db", "add", str(case.out / "index.db"), "-b", f"quay.io/hostile/etcd:1={bundle}",
                   env={**case.env, **(env or {})}, memory=MEMORY, timeout=timeout)


def test_alias_bomb_manifest_in_a_bundle_dir(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "bomb.yaml").write_text(BOMB)
    watch = case_dirs.watch()
    _judge(case_dirs, _add(case_dirs, bundle), "quay.io/hostile/etcd:1", "manifests/bomb.yaml", "excessive aliasing")
    watch.assert_clean()


def test_alias_bomb_needing_pyyaml_fallback(case_dirs: CaseDirs) -> None:
    """A merge key sends the fast reader to PyYAML: the budget must hold there too."""
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "bomb.yaml").write_text("m: &m {k: v}\nx:\n  <<: *m\n" + BOMB)
    _judge(case_dirs, _add(case_dirs, bundle), "manifests/bomb.yaml", "excessive aliasing")


def test_alias_bomb_in_bundle_metadata(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    text = (bundle / "metadata" / "annotations.yaml").read_text()
    (bundle / "metadata" / "annotations.yaml").write_text(text + "bomb:\n" + "".join(
        "  " + line + "\n" for line in BOMB.splitlines()))
    _judge(case_dirs, _add(case_dirs, bundle), "metadata/annotations.yaml", "excessive aliasing")


def test_json_manifest_nested_100k_deep(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "deep.json").write_text('{"kind": "X", "a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _judge(case_dirs, _add(case_dirs, bundle), "manifests/deep.json", "nested")


def test_yaml_manifest_nested_deep(case_dirs: CaseDirs) -> None:
    """300 levels: past our budget (200), under libyaml's own 1000 (which makes a file undecodable,
    skipped as opm skips it: the 50,000-level variant must simply not crash)."""
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "deep.yaml").write_text("a: " + "[" * 300 + "]" * 300 + "\n")
    _judge(case_dirs, _add(case_dirs, bundle), "manifests/deep.yaml", "nested")
    (bundle / "manifests" / "deep.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    outcome = _add(case_dirs, bundle)
    assert not outcome.timed_out and "Traceback" not in outcome.output and outcome.rc in (0, 1), outcome.describe()


def test_fifo_in_a_bundle_dir_does_not_hang_db_add(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    os.mkfifo(bundle / "manifests" / "pipe.yaml")
    _judge(case_dirs, _add(case_dirs, bundle, timeout=20), "manifests/pipe.yaml", "FIFO")


def test_bundle_link_to_credentials_outside_is_refused(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "creds.json").symlink_to(case_dirs.out / "docker-config.json")
    _judge(case_dirs, _add(case_dirs, bundle), "manifests/creds.json", "outside the bundle")


def test_manifest_over_the_size_cap(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    (bundle / "manifests" / "big.yaml").write_text("pad: " + "x" * 20_000 + "\n")
    _judge(case_dirs, _add(case_dirs, bundle, env={"INDEXFLOW_MAX_MANIFEST_BYTES": "16384"}),
           "manifests/big.yaml", "16384-byte limit")


def test_bundle_over_the_bundle_cap(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    for i in range(4):
        (bundle / "manifests" / f"pad{i}.yaml").write_text("pad: " + "x" * 30_000 + "\n")
    _judge(case_dirs, _add(case_dirs, bundle, env={"INDEXFLOW_MAX_BUNDLE_BYTES": "100000"}),
           "100000-byte limit of one bundle")


# --- bundle images (db add REF, read in memory from the registry) -----------------------------

def _image(registry_client, host: str, tag: str, extra: dict[str, bytes]) -> str:  # noqa: ANN001
    """The etcd fixture bundle plus `extra` files, pushed as one layer to the local registry."""
    from indexflow.registry.refs import ImageRef
    from sandbox.images import build_image, tar_gz

    files = {str(p.relative_to(ETCD)): p.read_bytes() for p in sorted(ETCD.rglob("*")) if p.is_file()}
    ref = ImageRef.parse(f"{host}/hostile/etcd-bundle:{tag}")
    digest = build_image(registry_client, ref, [tar_gz({**files, **extra})], {})
    return f"{ref.name}@{digest}"


def test_alias_bomb_in_a_bundle_image(case_dirs: CaseDirs, local_registry, registry_client) -> None:  # noqa: ANN001
    ref = _image(registry_client, local_registry.host, "bomb", {"manifests/bomb.yaml": BOMB.encode()})
    outcome = run_cli("db", "add", str(case_dirs.out / "index.db"), "-b", ref, env=case_dirs.env, memory=MEMORY,
                      timeout=TIMEOUT)
    _judge(case_dirs, outcome, ref, "manifests/bomb.yaml", "excessive aliasing")


def test_bundle_image_manifest_over_the_size_cap(case_dirs: CaseDirs, local_registry, registry_client) -> None:  # noqa: ANN001
    ref = _image(registry_client, local_registry.host, "big", {"manifests/big.yaml": b"pad: " + b"x" * 20_000})
    outcome = run_cli("db", "add", str(case_dirs.out / "index.db"), "-b", ref, memory=MEMORY, timeout=TIMEOUT,
                      env={**case_dirs.env, "INDEXFLOW_MAX_MANIFEST_BYTES": "16384"})
    _judge(case_dirs, outcome, ref, "INDEXFLOW_MAX_MANIFEST_BYTES")


def test_a_bundle_missing_after_add_is_never_reported_added(case_dirs: CaseDirs) -> None:
    """The flow's last check after add: a ref that is not in any channel of the db is one sentence."""
    db = _db(case_dirs)
    listed = succeeded(_db_cli(case_dirs, "list", db)).splitlines()
    present = json.loads(listed[0])["bundlePath"]
    code = (f"from indexflow.catalog.add import confirm_added\n"
            f"confirm_added({str(db)!r}, [{present!r}])\n"
            f"confirm_added({str(db)!r}, [{present!r}, 'quay.io/hostile/ghost@sha256:' + '0' * 64])\n")
    _judge(case_dirs, run_python(code, env=case_dirs.env, memory=MEMORY), "quay.io/hostile/ghost",
           "not in any channel")


def _set_package(bundle: Path, package: str) -> None:
    path = bundle / "metadata" / "annotations.yaml"
    text = path.read_text().replace("bundle.package.v1: etcd", f"bundle.package.v1: {json.dumps(package)}")
    path.write_text(text)


def test_nul_in_package_name_is_refused_at_add(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    _set_package(bundle, "etcd\u0000evil")
    _judge(case_dirs, _add(case_dirs, bundle), "bundle quay.io/hostile/etcd:1", "control characters")
    assert not (case_dirs.out / "index.db").exists() or _bundle_count(case_dirs.out / "index.db") == 0


def test_300_character_package_name_is_refused_at_add(case_dirs: CaseDirs) -> None:
    bundle = _bundle(case_dirs)
    _set_package(bundle, "p" * 300)
    _judge(case_dirs, _add(case_dirs, bundle), "bundle quay.io/hostile/etcd:1", "longer than 253 bytes")


def _bundle_count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM operatorbundle").fetchone()[0]
    finally:
        con.close()


# --- index.db files (db list / db migrate / db add) -------------------------------------------

def _db(case: CaseDirs, sql: str = "", params: tuple = ()) -> Path:
    """A private copy of a real opm index.db with `sql` applied to it."""
    path = case.out / "hostile.db"
    shutil.copyfile(SOURCE_DB, path)
    if sql:
        con = sqlite3.connect(path)
        con.executescript(sql) if not params else con.execute(sql, params)
        con.commit()
        con.close()
    return path


def _db_cli(case: CaseDirs, verb: str, db: Path, env: dict | None = None):  # noqa: ANN202
    args = ["db", verb, str(db)] + ([str(case.out / "fbc")] if verb == "migrate" else [])
    return run_cli(*args, env={**case.env, **(env or {})}, memory=MEMORY, timeout=TIMEOUT)


def test_truncated_db_is_not_an_index_db(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs)
    db.write_bytes(db.read_bytes()[:6000])
    for verb in ("list", "migrate"):
        _judge(case_dirs, _db_cli(case_dirs, verb, db), str(db), "not an index.db")


def test_unknown_schema_version_99_is_refused(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "UPDATE schema_migrations SET version = 99")
    _judge(case_dirs, _db_cli(case_dirs, "list", db), str(db), "schema version 99")


def test_recursive_cte_view_does_not_spin(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "ALTER TABLE channel_entry RENAME TO real_entry; CREATE VIEW channel_entry AS "
                        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                        "SELECT n AS entry_id, 'c' AS channel_name, 'p' AS package_name, 'b' AS operatorbundle_name, "
                        "NULL AS replaces, 0 AS depth FROM r;")
    for verb in ("list", "migrate"):
        _judge(case_dirs, _db_cli(case_dirs, verb, db), str(db), "view")


def test_foreign_trigger_is_refused(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "CREATE TRIGGER evil AFTER INSERT ON operatorbundle BEGIN DELETE FROM package; END;")
    _judge(case_dirs, _db_cli(case_dirs, "list", db), str(db), "trigger 'evil'")


def test_query_deadline_interrupts_a_runaway_query(case_dirs: CaseDirs) -> None:
    code = (f"from indexflow.catalog.db import connect_ro, db_error\nimport sqlite3\n"
            f"con = connect_ro({str(SOURCE_DB)!r})\n"
            "try:\n"
            "    con.execute('WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT count(*) FROM r').fetchone()\n"
            "except sqlite3.Error as exc:\n"
            f"    raise db_error({str(SOURCE_DB)!r}, exc)\n")
    outcome = run_python(code, env={**case_dirs.env, "INDEXFLOW_DB_QUERY_SECONDS": "1"}, memory=MEMORY, timeout=30)
    _judge(case_dirs, outcome, "deadline")


def test_invalid_json_in_operatorbundle_bundle(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "UPDATE operatorbundle SET bundle = CAST('{not json' AS BLOB) WHERE bundle IS NOT NULL")
    _judge(case_dirs, _db_cli(case_dirs, "migrate", db), str(db), "operatorbundle.bundle", "not valid JSON")


def test_invalid_json_in_properties_value(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "UPDATE properties SET value = '{broken' WHERE type = 'olm.gvk'")
    _judge(case_dirs, _db_cli(case_dirs, "migrate", db), str(db), "properties.value", "not valid JSON")


def test_invalid_json_in_dependencies_value(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "INSERT INTO dependencies SELECT 'olm.package', CAST('{nope' AS BLOB), name, version, "
                        "bundlepath FROM operatorbundle LIMIT 1")
    _judge(case_dirs, _db_cli(case_dirs, "migrate", db), str(db), "dependencies.value", "not valid JSON")


def test_blob_bundlepath_is_refused(case_dirs: CaseDirs) -> None:
    db = _db(case_dirs, "UPDATE operatorbundle SET bundlepath = CAST(bundlepath AS BLOB)")
    for verb in ("list", "migrate"):
        _judge(case_dirs, _db_cli(case_dirs, verb, db), str(db), "operatorbundle.bundlepath", "blob")


def test_a_clean_db_still_lists_and_migrates(case_dirs: CaseDirs) -> None:
    """The checks refuse hostile dbs, not opm's own: the unmodified fixture passes every verb."""
    db = _db(case_dirs)
    listed = [json.loads(line) for line in succeeded(_db_cli(case_dirs, "list", db)).splitlines()]
    assert {r["packageName"] for r in listed} == {"etcd"}
    succeeded(_db_cli(case_dirs, "migrate", db))
    assert (case_dirs.out / "fbc" / "etcd" / "catalog.json").is_file()


def test_write_fresh_replaces_a_link_instead_of_following_it(case_dirs: CaseDirs) -> None:
    victim = case_dirs.home / "victim"
    victim.write_text("precious")
    link = case_dirs.out / "catalog.json"
    link.symlink_to(victim)
    succeeded(run_python(f"from pathlib import Path\nfrom indexflow.catalog.fbcload import write_fresh\n"
                         f"write_fresh(Path({str(link)!r}), b'new')", env=case_dirs.env, memory=MEMORY))
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "new"


# --- mode map files (`indexflow db add --mode-map`, `indexflow merge --graph-update-modes`) -------------

MODE_MAPS = {
    "billion-laughs": (BOMB, ["excessive aliasing"]),
    # the whole bomb inside the first bad value: quoting it with repr() was a MemoryError
    "billion-laughs-in-one-value": ("etcd: [" + ", ".join(["&a [" + ", ".join(["lol"] * 9) + "]"] + [
        f"&{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]) + "]\n", ["excessive aliasing"]),
    "self-alias": ("etcd: &x [*x]\n", ["graph mode of package 'etcd'", "not a list"]),
    "deep-json": ('{"etcd": ' * 100_000, ["nests too deeply"]),
    "huge-list": ("etcd: [" + "x, " * 400_000 + "x]\n", ["graph mode of package 'etcd'", "not a list"]),
    "repeated-yaml-key": ("etcd: semver\nother: replaces\netcd: replaces\n", ["gives 'etcd' more than once"]),
    "repeated-json-key": ('{"etcd": {"updateGraph": "semver-mode", "updateGraph": null}}',
                          ["gives 'updateGraph' more than once"]),
}


@pytest.mark.parametrize("name", list(MODE_MAPS))
def test_hostile_mode_map_is_one_sentence_before_any_write(case_dirs: CaseDirs, name: str) -> None:
    """A repeated key is refused rather than silently resolved (a parser keeps the last); an alias bomb
    or a huge value is neither expanded nor quoted."""
    text, fragments = MODE_MAPS[name]
    path = case_dirs.out / "modes.yaml"
    path.write_text(text)
    db = case_dirs.out / "index.db"
    outcome = run_cli("db", "add", str(db), "--mode-map", str(path), "-b", f"quay.io/etcd/bundle:0.6.1={ETCD}",
                      env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, f"mode map {path}", *fragments)
    assert not db.exists()


def test_an_auth_file_nested_beyond_the_parser_is_one_sentence(case_dirs: CaseDirs) -> None:
    """A docker config.json (`--auth-file`) is read before any pull: nesting that exhausts Python's JSON
    parser names the file instead of ending in a RecursionError traceback."""
    path = case_dirs.out / "config.json"
    path.write_text('{"auths": ' * 5000 + "{}" + "}" * 5000)
    db = case_dirs.out / "index.db"
    outcome = run_cli("db", "add", str(db), "--auth-file", str(path), "-b", "quay.invalid/etcd/bundle:0.6.1",
                      env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, f"cannot read the registry auth file {path}: RecursionError")
    assert not db.exists()


def test_a_token_file_that_is_not_text_is_one_sentence_that_quotes_none_of_it(case_dirs: CaseDirs) -> None:
    """`indexflow merge --overwrite-target-index-token-file` of a binary file (a wrong path, say)."""
    token = case_dirs.out / "token"
    token.write_bytes(b"robot:" + SECRET.encode() + b"\xff\xfe")
    outcome = run_cli("merge", "--source-from-index", "quay.invalid/ns/index:v4.17", "--overwrite-target-index-token-file",
                      str(token), env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, f"cannot read the token file {token}")


def test_an_endless_mode_map_is_refused_at_its_cap(case_dirs: CaseDirs) -> None:
    """/dev/zero (or a pipe) has no size to check beforehand: reading it whole was a MemoryError."""
    db = case_dirs.out / "index.db"
    outcome = run_cli("db", "add", str(db), "--mode-map", "/dev/zero", "-b", f"quay.io/etcd/bundle:0.6.1={ETCD}",
                      env=case_dirs.env, memory=MEMORY, timeout=TIMEOUT)
    _judge(case_dirs, outcome, "mode map /dev/zero is larger than 4 MiB")
    assert not db.exists()
