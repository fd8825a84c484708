"""Plant each known mutant in a copy of the tree and run only the test aimed at it: all must be caught.

`make mutation` (or `python tests/mutants.py [--baseline] [--only ID ...]`) prints one line per
mutant: caught / NOT caught / error. These are the realistic bugs that once slipped past the suite
(issue "Tests that catch the bugs they claim to"); a mutant whose text no longer occurs in the code
is reported as "stale" so the list is kept up to date with the code it targets.

Each mutant runs in its own copy of the working tree (tracked files, as they are on disk), with
`../shared` linked beside it and PYTHONPATH pointing at the copy, so the real tree is never touched.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from indexflow.app.serve_cmd import signal_group

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    bug: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("swallowed-index-db-push", "the index.db push swallows its error (target overwritten, stale index.db)",
           "tasks/artifacts.py", "    return artifacts.push(ref, db_path, annotations)",
           "    try:\n        return artifacts.push(ref, db_path, annotations)\n    except Exception:\n        return ''",
           ("tests/reliability/test_fault_matrix.py::test_fault_leaves_no_trace[push-the-index.db-artifact:error]",)),
    Mutant("token-not-attached", "the overwrite token is not attached to the target's registry client",
           "tasks/session.py", "target_registry = RegistryClient(auth=target_auth, **kw)", "target_registry = registry",
           ("tests/e2e/test_auth_enforced.py::test_overwrite_writes_the_target_as_the_token_user",)),
    Mutant("source-ocp-in-metadata", "the build metadata gets the source's OCP version",
           "flows/merge_index.py", "cfg.ocp_opm_mapping), prep.ocp_version, prep.scope,",
           "cfg.ocp_opm_mapping), prep.source.ocp_version, prep.scope,",
           ("tests/e2e/test_merge_e2e.py::test_merge_without_overwrite_publishes_outputs_and_closes_the_mr",)),
    Mutant("related-images-lost", "bundles lose their relatedImages when pulled",
           "indexflow/catalog/bundle.py", "related_images=_images(csv, bundle_path_ref),",
           "related_images=[bundle_path_ref],",
           ("tests/catalog/test_registry_add.py::test_pulled_bundle_matches_what_its_files_say",)),
    Mutant("all-errors-transient", "every error is treated as transient",
           "tasks/retry.py", "    return isinstance(exc, IndexflowError) and exc.transient", "    return True",
           ("tests/flow/test_task_retries.py::test_a_refusal_is_not_retried",)),
    Mutant("lock-per-thread", "the target lock's key is made per thread",
           "tasks/lock.py", 'hashlib.sha256("\\n".join(parts).encode())',
           'hashlib.sha256("\\n".join([*parts, str(__import__("threading").get_ident())]).encode())',
           ("tests/reliability/test_concurrency.py::test_lock_key_matches_the_flow",)),
]


def copy_tree(dest: Path) -> Path:
    """The tracked files of the working tree under dest/<name>, with ../shared beside them."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    tree = dest / ROOT.name
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name, follow_symlinks=False)
    (dest / "shared").symlink_to(ROOT.parent / "shared")
    return tree


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> str:
    """"passed", "failed" (an assertion of the aimed test), or "error: ..." (it could not run: a
    fixture that did not come up proves nothing about the mutant)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "INDEXFLOW_CACHE_DIR": tempfile.mkdtemp(prefix="mutant-cache-")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    # output to a file, not a pipe: a process pytest left behind must not keep its verdict from us
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # what the run left in its session (servers, flow threads' helpers) goes with it
            signal_group(proc.pid, signal.SIGKILL)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.strip()]
    if returncode is None:
        return f"error: no result in {timeout:.0f} s"
    summary = lines[-1] if lines else ""
    if returncode == 0:
        return "passed"
    if returncode == 1 and re.search(r"\d+ failed", summary) and not re.search(r"\d+ errors?\b", summary):
        return "failed"
    return f"error: pytest exit code {returncode}: {summary[:120]}"



def verdict(mutant: Mutant, baseline: bool, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        tree = copy_tree(Path(tmp))
        if baseline and (unmutated := run_tests(tree, mutant.tests, timeout)) != "passed":
            return f"error: without the mutant the aimed test {unmutated}"
        target = tree / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return f"stale: the mutated text occurs {text.count(mutant.old)} times in {mutant.path}"
        target.write_text(text.replace(mutant.old, mutant.new))
        outcome = run_tests(tree, mutant.tests, timeout)
    return {"passed": "NOT caught", "failed": "caught"}.get(outcome, outcome)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--baseline", action="store_true", help="first check each aimed test passes unmutated")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    results = []
    for mutant in chosen:  # one line as each finishes: the e2e-aimed ones take minutes
        results.append((mutant, verdict(mutant, args.baseline, args.timeout)))
        print(f"{results[-1][1]:<12} {mutant.id:<26} {mutant.bug}  [{' '.join(mutant.tests)}]", flush=True)
    caught = sum(outcome == "caught" for _, outcome in results)
    print(f"{caught}/{len(results)} mutants caught")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
