"""Exceptions a user can cause. Their text is one sentence naming the input at fault.

Anything that is not an IndexflowError is a bug and may show a traceback. Every message passes
through the run's redaction step when the error is created (indexflow/redact.py): no secret the run
knows can reach a state message, a task state, a log line or the IIB endpoint through an error.
"""


class IndexflowError(Exception):
    """Base of every error caused by input or by a remote service, shown to users as-is.

    `transient` says whether asking again later may succeed (a 503, a dropped connection after the
    client's own retries); it is set where the cause is known, at the adapter that saw it, so that
    retry decisions never read the message (a 404 for an image named `connection-operator` is final).
    """

    exit_code = 1

    def __init__(self, *args: object, transient: bool = False) -> None:
        # imported here: a command that raises no error (`fbc validate` of a good catalog) does not
        # pay for redact's imports (logging, threading, traceback) at start-up
        from indexflow.redact import redact

        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))
        self.transient = transient


class RegistryError(IndexflowError):
    """A registry refused, lost, or does not have what was asked for."""


class CatalogError(IndexflowError):
    """The catalog engine rejected a bundle, a database or an FBC directory (opm's message)."""


class ValidationError(IndexflowError):
    """A merge parameter is invalid (IIB's API message)."""


class PublishError(IndexflowError):
    """Git, GitLab or Konflux failed while publishing the merged catalog."""


class LockError(IndexflowError):
    """The per-target lock could not be taken (another merge holds it too long, or it is disabled)."""
