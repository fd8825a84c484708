"""The overwrite token, passed by reference instead of by value.

Prefect stores flow-run parameters in plain text (visible in the UI and API), so a token given as
the `overwrite_target_index_token` parameter of a *deployment* run would be stored there. Callers
that start runs through the API (the IIB-compatible endpoint, batch merges) instead put the token in
a Secret block and pass its name as `overwrite_target_index_token_secret`. Blocks whose name starts
with ONE_TIME_SECRET_PREFIX are deleted as soon as the run has read them, so the token lives no longer
than it must.
"""

from __future__ import annotations

from prefect.blocks.system import Secret
from pydantic import SecretStr

from indexflow.errors import ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX


def overwrite_token(token: SecretStr | None, secret_name: str | None) -> str | None:
    """The token value from the parameter or from the named Secret block (never both)."""
    if token is not None and secret_name:
        raise ValidationError('Give either "overwrite_target_index_token" or '
                              '"overwrite_target_index_token_secret", not both')
    if not secret_name:
        return token.get_secret_value() if token is not None else None
    try:
        value = str(Secret.load(secret_name).get())
    except ValueError:
        raise ValidationError(f'The Secret block "{secret_name}" named by "overwrite_target_index_token_secret" '
                              "does not exist") from None
    if secret_name.startswith(ONE_TIME_SECRET_PREFIX):
        Secret.delete(secret_name)
    return value
