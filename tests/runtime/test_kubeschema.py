"""The sandbox cluster refuses what a real API server (strict field validation) refuses: the cases are
written from the Kubernetes API rules, and the pool's own job template must pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sandbox.kubeschema import Invalid, validate

REPO = Path(__file__).resolve().parents[2]


def rendered_template() -> dict:
    """deployments/kubernetes-job-template.json with its defaults, as the worker renders it."""
    from prefect.utilities.templating import apply_values

    template = json.loads((REPO / "deployments/kubernetes-job-template.json").read_text())
    values = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    values.update(image="quay.example.com/indexflow/worker:1", env={}, labels={}, annotations={}, name="merge")
    manifest = apply_values(template["job_configuration"], values)["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container.update(args=["prefect", "flow-run", "execute"], env=[{"name": "PREFECT__FLOW_RUN_ID", "value": "x"}])
    return manifest


def test_the_pools_job_template_is_a_valid_job() -> None:
    validate("jobs", rendered_template(), "indexflow")


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


@pytest.mark.parametrize("change, path", [
    (lambda j: _pod(j).update(completions=1), "spec.template.spec.completions"),  # a Job field in the pod
    (lambda j: _pod(j)["containers"][0].pop("name"), "spec.template.spec.containers[0]"),
    (lambda j: _pod(j)["containers"][0].pop("image"), "spec.template.spec.containers[0].image"),
    (lambda j: _pod(j)["containers"][0]["resources"]["limits"].update(memory="4 GB"),
     "spec.template.spec.containers[0].resources.limits.memory"),
    (lambda j: j["spec"].update(backoffLimit="0"), "spec.backoffLimit"),
    (lambda j: _pod(j).update(restartPolicy="Always"), "spec.template.spec.restartPolicy"),
    (lambda j: _pod(j)["containers"][0]["volumeMounts"][0].update(name="other"),
     "spec.template.spec.containers[0].volumeMounts[0].name"),
    (lambda j: j["metadata"]["labels"].update({"bad label": "x"}), "metadata.labels"),
    (lambda j: _pod(j)["containers"][0]["env"].append({"name": "A", "valueFrom": {"secretRef": {}}}),
     "spec.template.spec.containers[0].env[1].valueFrom.secretRef"),
    (lambda j: j["metadata"].update(namespace="elsewhere"), "metadata.namespace"),
])
def test_invalid_jobs_are_refused_with_the_field(change, path: str) -> None:  # noqa: ANN001
    job = copy.deepcopy(rendered_template())
    job["metadata"].setdefault("labels", {})
    change(job)
    with pytest.raises(Invalid) as refused:
        validate("jobs", job, "indexflow")
    assert path in [p for p, _ in refused.value.causes], refused.value.causes
