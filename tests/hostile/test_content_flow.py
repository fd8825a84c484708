"""Hostile content through the whole merge flow (issue 10's two flow-level cases), each run in a child
process under a memory and a time ceiling against the suite's sandbox and Prefect API:

- a Git commit with links in `configs/` (one to the run's credentials file, one over a package the
  merge rewrites, pointing outside) fails, even in a dry run, with one sentence naming the link;
  nothing outside is written and the registry password appears nowhere;
- a target listing a bundle whose image carries a YAML billion-laughs manifest fails with one
  sentence naming the bundle, within the memory ceiling (the bomb expands to GBs if built).
"""

from __future__ import annotations

import secrets

from prefect.settings import get_current_settings

from tests.hostile.flowcases import alias_bomb_target, flow_code, symlinked_configs
from tests.hostile.harness import CaseDirs, Outcome, assert_no_secret, run_python
from tests.reliability.sandbox_session import BLOCK, prefect_api, proxied_env  # noqa: F401 - fixtures

PASSWORD = "hostile-" + secrets.token_hex(12)
MEMORY = 2560 << 20  # Prefect, its threads and the flow fit; an expanded bomb (~3 GB) does not
TIMEOUT = 300.0


def _env(case: CaseDirs) -> dict[str, str]:
    return {**case.env, "PREFECT_API_URL": str(get_current_settings().api.url)}


def _flow_sentence(outcome: Outcome, *fragments: str) -> str:
    """The run failed with an IndexflowError: its message is the last stderr line (Prefect's own log
    lines precede it), one line, naming every fragment; no MemoryError, no timeout."""
    assert not outcome.timed_out, f"the flow hit the time ceiling\n{outcome.describe()}"
    assert outcome.rc == 1, f"expected exit status 1 (an IndexflowError)\n{outcome.describe()}"
    assert "MemoryError" not in outcome.output, outcome.describe()
    sentence = [line for line in outcome.stderr.splitlines() if line.strip()][-1]
    state = next(line for line in outcome.stdout.splitlines() if line.startswith("STATE: "))[len("STATE: "):]
    assert state == sentence, f"the Failed state's message is not the sentence\n{outcome.describe()}"
    assert len(sentence) < 1500 and not sentence.startswith(("RuntimeError", "Traceback")), outcome.describe()
    for fragment in fragments:
        assert fragment in sentence, f"{fragment!r} is not in the message\n{outcome.describe()}"
    return sentence


def test_git_configs_with_links_fail_in_one_sentence_writing_nothing_outside(proxied_env, case_dirs):  # noqa: F811
    env = proxied_env
    target = symlinked_configs(env, case_dirs.home, "hostile-links", PASSWORD)
    before = target.victim.read_bytes()
    prefect_home = case_dirs.home / ".prefect"  # the run's task results: the child's own PREFECT_HOME
    prefect_home.mkdir()
    watch = case_dirs.watch(prefect_home)
    params = dict(source_from_index=env.seeded.source_index, target_index=target.target_index,
                  ignore_bundle_ocp_version=True, dry_run=True, request_id="hostile-links",
                  settings_block=target.settings_block)
    outcome = run_python(flow_code(params), env=_env(case_dirs), memory=MEMORY, timeout=TIMEOUT)
    _flow_sentence(outcome, "configs/", "symbolic link")
    assert_no_secret(outcome, [PASSWORD])
    assert target.victim.read_bytes() == before and not target.victim.is_symlink()
    watch.assert_clean()


def test_alias_bomb_bundle_in_the_target_fails_in_one_sentence(proxied_env, case_dirs):  # noqa: F811
    env = proxied_env
    target = alias_bomb_target(env, case_dirs.home, "hostile-bomb", BLOCK)
    params = dict(source_from_index=env.seeded.source_index, target_index=target.target_index,
                  ignore_bundle_ocp_version=True, dry_run=True, request_id="hostile-bomb",
                  settings_block=target.settings_block)
    outcome = run_python(flow_code(params), env=_env(case_dirs), memory=MEMORY, timeout=TIMEOUT)
    _flow_sentence(outcome, "bomb-operator", "manifests/bomb.yaml", "excessive aliasing")
