"""The Konflux wait of merge.md A2 step 9, seen from the flow: commit SHA in, built image out.

The polling sensor itself is `tasks/konflux.py` (owned by the Konflux layer); this adapter keeps
the flow's call one line and turns a missing IMAGE_URL into IIB's message.
"""

from __future__ import annotations


def wait_for_build(kubernetes, namespace: str, sha: str, interval: float, timeout: float) -> str:  # noqa: ANN001
    from tasks.konflux import wait_for_pipelinerun

    return wait_for_pipelinerun(kubernetes, namespace, sha, interval, timeout)
