"""The harness itself: its ceilings stop what they claim to stop and its judges catch what they claim to."""

from __future__ import annotations

import base64

import pytest

from tests.hostile.harness import (CaseDirs, assert_no_secret, assert_no_secret_in_tree, one_sentence, run_cli,
                                   run_python, succeeded)


def test_memory_ceiling_stops_a_runaway_allocation() -> None:
    outcome = run_python("x = bytearray(3 << 30)", memory=512 << 20)
    assert outcome.rc == 1 and "MemoryError" in outcome.stderr
    with pytest.raises(AssertionError, match="traceback"):
        one_sentence(outcome)


def test_time_ceiling_kills_a_hang() -> None:
    outcome = run_python("import time; time.sleep(120)", timeout=2)
    assert outcome.timed_out and outcome.elapsed < 30
    with pytest.raises(AssertionError, match="time ceiling"):
        one_sentence(outcome)


def test_an_indexflow_error_is_one_sentence() -> None:
    outcome = run_python("from indexflow.errors import RegistryError\nraise RegistryError('quay.io/x: not found')")
    assert one_sentence(outcome, "quay.io/x") == "quay.io/x: not found"


def test_cli_errors_are_one_sentence(case_dirs: CaseDirs) -> None:
    outcome = run_cli("db", "list", str(case_dirs.out / "missing.db"), env=case_dirs.env)
    one_sentence(outcome, "missing.db")


def test_success_is_recognised() -> None:
    assert succeeded(run_python("print('ok')")) == "ok\n"


def test_secret_found_raw_and_inside_a_basic_header() -> None:
    secret = "s3cr3t-passw0rd"
    header = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
    for text in (f"token {secret}", f"Authorization: {header}", base64.urlsafe_b64encode(secret.encode()).decode()):
        with pytest.raises(AssertionError, match="secret"):
            assert_no_secret(text, [secret])
    assert_no_secret("Authorization: Basic YWxpY2U6b3RoZXI=", [secret])


def test_secret_found_in_a_file(case_dirs: CaseDirs) -> None:
    (case_dirs.out / "config.json").write_text('{"auth": "%s"}' % base64.b64encode(b"bob:hunter2-long").decode())
    with pytest.raises(AssertionError, match="config.json"):
        assert_no_secret_in_tree(case_dirs.root, ["hunter2-long"])


def test_write_watch_sees_a_write_outside_and_allows_inside(case_dirs: CaseDirs) -> None:
    victim = case_dirs.home / "victim"
    victim.write_text("before")
    watch = case_dirs.watch()
    succeeded(run_python(f"open({str(case_dirs.out / 'ok')!r}, 'w').write('fine')"))
    watch.assert_clean()
    succeeded(run_python(f"open({str(victim)!r}, 'w').write('overwritten!')"))
    with pytest.raises(AssertionError, match="victim"):
        watch.assert_clean()
