"""The contract between the flow and `indexflow iib-api`: the progress artifact's description holds the
current IIB state reason on its first line (then "step i of n"), which the endpoint answers as
`state_reason` while the run works."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from indexflow.app.iib_api import current_reason
from tasks import report


@flow
def two_steps() -> None:
    story = report.MergeStory("progress-1")
    story.start()
    story.reason(report.PREPARING)
    with story.step(report.CLONING):
        story.progress_within(0.5, "half way")
    story.close()  # the artifact writes go out in the background; a run sends them all before it ends


def progress_artifact(flow_run_id) -> dict:  # noqa: ANN001 - UUID
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    (progress,) = [a.model_dump(mode="json") for a in found if a.type == "progress"]
    return progress


def test_progress_description_is_the_current_iib_reason() -> None:
    state = two_steps(return_state=True)
    progress = progress_artifact(state.state_details.flow_run_id)
    # first line: the reason (not the progress line within the step); then where the run is (issue 13)
    assert progress["description"] == f"{report.CLONING}\n\nstep 2 of 16"
    assert report.progress_reason(progress["description"]) == current_reason(progress, None) == report.CLONING
    assert 0 < float(progress["data"]) < 100
