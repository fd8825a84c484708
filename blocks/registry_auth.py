"""The registry credentials of a merge run, read from their Secret block straight into memory.

The Secret holds a docker `config.json` (text or parsed JSON). It is handed to
`DockerAuth.from_dict`, never written to a file: a file beside the run's workdir is a file that
untrusted content (a symlink in a Git tree, say) could make some error message quote. The
credentials are registered with the run's redaction step (`indexflow.redact`) as they are read.
"""

from __future__ import annotations

from prefect.blocks.system import Secret

from indexflow import redact
from indexflow.registry.auth import DockerAuth


def registry_auth(secret_name: str | None) -> DockerAuth:
    """Credentials from the named Secret block; without one, the machine's docker/podman config."""
    if not secret_name:
        return DockerAuth.from_config(None)
    value = Secret.load(secret_name).get()  # a JSON secret comes back parsed
    redact.remember_docker_config(value)  # the run's redaction step learns every credential in it
    return DockerAuth.from_dict(value, f"the registry auth Secret block {secret_name!r}")
