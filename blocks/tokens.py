"""The overwrite token, kept out of every flow run's parameters.

Prefect stores flow-run parameters in plain text (the UI and the API show them), so the raw token is
never a parameter of the merge flow. It reaches the flow one of two ways:

- A deployment run (REST, the UI, the IIB endpoint, a batch) references a saved Secret block. The
  parameter `overwrite_target_index_token_secret` is typed `Secret`, so the run form offers a block
  picker and the run stores only the reference, `{"$ref": {"block_document_id": "<uuid>"}}` (or
  `{"$ref": {"block_document_slug": "secret/<name>"}}`); Prefect loads the block as the run starts.
  A Secret given inline (`{"value": ...}`) is refused: its value would be stored with the run.
- An in-process run (`indexflow merge`, `run_merge`) hands the token over in memory:
  `local_overwrite_token` sets a context variable around the flow call, read by `overwrite_token`.

Blocks whose name starts with ONE_TIME_SECRET_PREFIX (the IIB endpoint makes one per request) are
deleted as soon as the run has read them, so the token lives no longer than it must.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect.blocks.system import Secret
from pydantic import SecretStr

from indexflow.errors import ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX

PARAMETER = "overwrite_target_index_token_secret"
# The run form and the server's schema check refuse an inline Secret (`{"value": ...}`): only a
# reference passes, so no token value is ever stored with a run (see tests/deploy).
REFERENCE_ONLY = {"not": {"type": "object", "required": ["value"]}}

_local_token: ContextVar[SecretStr | None] = ContextVar("indexflow_overwrite_token", default=None)


@contextmanager
def local_overwrite_token(token: str | SecretStr | None) -> Iterator[None]:
    """Within this block, a merge flow run in this process uses `token` (not a run parameter)."""
    reset = _local_token.set(SecretStr(token) if isinstance(token, str) else token)
    try:
        yield
    finally:
        _local_token.reset(reset)


def overwrite_token(secret: Secret | None) -> str | None:
    """The token value: from the in-process hand-over or from the referenced Secret block (never both)."""
    local = _local_token.get()
    if local is not None and secret is not None:
        raise ValidationError(f'Give either a local overwrite token or "{PARAMETER}", not both')
    if secret is None:
        return local.get_secret_value() if local is not None else None
    return _read_secret(secret)


def _read_secret(secret: Secret) -> str:
    """The block's value; a one-time block is deleted once read."""
    if secret._block_document_id is None:
        raise ValidationError(f'"{PARAMETER}" must reference a saved Secret block '
                              '({"$ref": {"block_document_id": "<uuid>"}}), never hold the token itself')
    value = str(secret.get())
    name = secret._block_document_name or ""
    if name.startswith(ONE_TIME_SECRET_PREFIX):
        Secret.delete(name)
    return value
