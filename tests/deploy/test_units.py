"""Pure parts of the deployment layer: IIB state mapping and batch files (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.batch_merge import BatchFileError, Outcome, load_batch, summary_markdown
from indexflow.app.iib_api import UNKNOWN_ERROR, iib_state, request_json
from indexflow.app.iib_builds import Build

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("state, last_reason, expected", [
    ({"type": "SCHEDULED"}, None, ("in_progress", "The request was initiated")),
    ({"type": "RUNNING"}, "Validating the FBC config", ("in_progress", "Validating the FBC config")),
    ({"type": "PAUSED"}, "Waiting on KONFLUX build", ("in_progress", "Waiting on KONFLUX build")),
    ({"type": "COMPLETED"}, "The operator(s) ['a'] were successfully merged",
     ("complete", "The operator(s) ['a'] were successfully merged")),
    ({"type": "FAILED", "message": "Failed to merge operators: Konflux build failed"}, "Waiting on KONFLUX build",
     ("failed", "Failed to merge operators: Konflux build failed")),
    ({"type": "FAILED", "message": "Flow run encountered an exception: KeyError: 'x'"}, None,
     ("failed", UNKNOWN_ERROR)),
    ({"type": "CRASHED", "message": "Flow run infrastructure exited with non-zero status code 137."}, None,
     ("failed", UNKNOWN_ERROR)),
    ({"type": "CANCELLED", "message": "cancelled by user"}, None, ("failed", "The request was cancelled")),
])
def test_prefect_states_map_to_iib_states(state: dict, last_reason: str | None, expected: tuple) -> None:
    assert iib_state({"state": state}, last_reason) == expected


def test_request_json_names_the_output_only_when_complete_and_never_the_token() -> None:
    settings = {"iib_registry": "quay.example.com/iib", "image_push_template": "{registry}/iib-build:{request_id}"}
    params = {"source_from_index": "s:1",
              "overwrite_target_index_token_secret": {"$ref": {"block_document_id": "b10c"}},
              "build_tags": ["x"]}
    run = {"id": "f00", "parameters": params, "created": "2026-01-01T00:00:00Z",
           "state": {"type": "COMPLETED", "message": "ok", "timestamp": "2026-01-01T00:01:00+00:00"}}
    done = request_json(Build(7, run), settings, "http://ui")
    assert done["index_image"] == "quay.example.com/iib/iib-build:7" and done["state_reason"] == "ok"
    assert done["flow_run_url"] == "http://ui/runs/flow-run/f00" and "b10c" not in str(done)
    assert done["updated"] == "2026-01-01T00:01:00.000000Z" and "state_history" not in done
    failed = {**run, "state": {"type": "FAILED", "message": "x"}}
    assert request_json(Build(7, failed), settings, None)["index_image"] is None
    dry = {**run, "parameters": {**params, "dry_run": True}}
    assert request_json(Build(7, dry), settings, None)["index_image"] is None


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_batch_defaults_apply_to_every_entry(tmp_path: Path) -> None:
    entries = load_batch(write(tmp_path, {"settings_block": "prod", "dry_run": True, "merges": [
        {"name": "a", "source_from_index": "s:1"},
        {"name": "b", "source_from_index": "s:2", "dry_run": False, "overwrite_target_index_token_secret": "tok"}]}))
    assert [(e.name, e.parameters) for e in entries] == [
        ("a", {"settings_block": "prod", "dry_run": True, "source_from_index": "s:1"}),
        ("b", {"settings_block": "prod", "dry_run": False, "source_from_index": "s:2",
               "overwrite_target_index_token_secret": "tok"})]


@pytest.mark.parametrize("doc, message", [
    ({"merges": None}, "must have a 'merges' list"),
    ({"merges": [{"source_from_index": "s"}]}, "merges[0] needs a 'name'"),
    ({"merges": [{"name": "a", "source_from_index": "s", "bundles": []}]}, "merge 'a' has unknown key(s): bundles"),
    ({"merges": [{"name": "a", "source_from_index": "s"}, {"name": "a", "source_from_index": "t"}]},
     "repeats entry name(s): a"),
])
def test_bad_batch_files_are_one_sentence(tmp_path: Path, doc: object, message: str) -> None:
    with pytest.raises(BatchFileError) as info:
        load_batch(write(tmp_path, doc))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_shipped_nightly_batch_is_empty_and_the_example_is_valid() -> None:
    """Its schedule ships paused, yet an operator may resume it: the file must not hold placeholder merges."""
    assert load_batch(REPO / "deployments/batches/nightly.yaml") == []
    assert [e.name for e in load_batch(REPO / "deployments/batches/example.yaml")] == [
        "community-v4.17", "certified-v4.17-dry-run"]


def test_operations_documents_every_settings_field() -> None:
    from blocks.settings import MergeSettings

    text = (REPO / "docs/OPERATIONS.md").read_text()
    undocumented = [name for name in MergeSettings.model_fields if f"| `{name}` |" not in text]
    assert not undocumented, f"docs/OPERATIONS.md §2.1 lacks {undocumented}"
    assert all(field.description for field in MergeSettings.model_fields.values())  # the UI's field help


def test_unreadable_batch_file(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match=r"^cannot read batch file .*missing\.yaml \(No such file"):
        load_batch(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("merges: [\n")
    with pytest.raises(BatchFileError, match=r"bad\.yaml is not valid YAML"):
        load_batch(tmp_path / "bad.yaml")


@pytest.mark.parametrize("content, sentence", [
    (b"merges:\n  - name: a\n    source_from_index: s:1\n    source_from_index: s:2\n",
     "gives 'source_from_index' more than once"),  # PyYAML alone kept s:2 without a word
    (("a: &a [" + ", ".join(["x"] * 9) + "]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))).encode(),
     ": yaml: document contains excessive aliasing"),
    (b"merges: [" + b"[" * 5000 + b"]" * 5000 + b"]\n", "is not valid YAML"),
    (b"merges: [caf\xe9]\n", "(not UTF-8 text)"),
], ids=["repeated-key", "alias-bomb", "deep", "latin-1"])
def test_hostile_batch_file_is_one_sentence(tmp_path: Path, content: bytes, sentence: str) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_bytes(content)
    with pytest.raises(BatchFileError) as err:
        load_batch(path)
    assert str(err.value).startswith(f"batch file {path}") or str(err.value).startswith(f"cannot read batch file {path}")
    assert sentence in str(err.value) and len(str(err.value)) < 300


def test_summary_names_failures_and_links_runs() -> None:
    text = summary_markdown("b.yaml", [Outcome("a", "complete", "merged", "1234567890"),
                                       Outcome("b", "failed", "Failed: x | y")], "http://ui")
    assert text.startswith("# batch-merge: 1 of 2 merges complete")
    assert "**Failed:** b" in text and "[12345678](http://ui/runs/flow-run/1234567890)" in text
    assert "| b | failed | Failed: x / y | - |" in text


def test_batch_summary_shows_a_dry_run_as_such() -> None:
    dry = {"dry_run": True, "missing": 88, "deprecated": 2}
    text = summary_markdown("b.yaml", [Outcome("d", "complete", "dry run, nothing published (88 added)", "1", dry)],
                            None)
    assert "| d | dry run | dry run, nothing published (88 added) | 1 |" in text


def test_completion_line_names_the_first_operators_and_counts_the_rest() -> None:
    from tasks.report import operators_line, target_slug

    line = operators_line([f"op-{i:02d}" for i in range(12)] * 3)
    assert line == ("The operator(s) ['op-00', 'op-01', 'op-02', 'op-03', 'op-04', 'op-05', 'op-06', 'op-07', "
                    "'op-08', 'op-09'] and 2 more were successfully merged from the source index image into the "
                    "target index image")
    assert operators_line(["b", "a", "a"]).startswith("The operator(s) ['a', 'b'] were")
    assert target_slug("127.0.0.1:5000/rh-osbs/iib-pub-pending:v4.17") == "rh-osbs/iib-pub-pending:v4.17"
    assert target_slug("quay.io/ns/index:v4.17") == "ns/index:v4.17"
    assert target_slug("ns/index:v4.17") == "ns/index:v4.17"  # Docker Hub style: no host to drop
