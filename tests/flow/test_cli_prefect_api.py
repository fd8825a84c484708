"""A command that starts Prefect's ephemeral API on a machine too busy to bring it up in time ends in one
sentence that names the way out, not in Prefect's RuntimeError traceback (seen in `make demo` at load 40)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.prefect_server import BIN, REPO


def test_an_ephemeral_api_that_does_not_start_in_time_is_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # no PREFECT_API_URL
    # a zero budget: Prefect gives up before its first health check, as it would after 240 s on a busy box
    env.update(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    result = subprocess.run([str(BIN / "indexflow"), "merge", "--source-from-index", "127.0.0.1:9/a/b:1",
                             "--target-index", "127.0.0.1:9/a/c:1", "--dry-run"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert errors == ["Error: the local Prefect API (started because PREFECT_API_URL is not set) did not answer "
                      "within PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=0 s; on a busy machine raise that "
                      "setting, or set PREFECT_API_URL to a running Prefect server"]
