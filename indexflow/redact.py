"""One redaction step for every message that leaves the process (issue 10 item 2).

The run registers each secret it learns (registry credentials from the docker config, the Git/GitLab
token, the Kubernetes credentials, the overwrite token) with `remember`; from then on `redact(text)`
replaces every known secret, and the text its bytes show inside any base64 string (a Basic header's
`user:password`, a docker config's `auth`), with `***`.

Where it is applied:
- `IndexflowError` redacts its own message when it is created, so a state message, a task state,
  the IIB endpoint's `state_reason` and anything built from `str(exc)` never carry a secret;
- `RedactingFilter` on Prefect's log handlers (installed by the flow) redacts every log record,
  tracebacks included;
- artifacts are written from those messages.

The set is process-wide (a worker may run several merges): redacting another run's secret too is
harmless, missing one is not.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_SECRET = 4  # shorter values ("", "a", "u") would mask ordinary words
MIN_B64_CORE = 6

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _base64_cores(raw: bytes) -> set[str]:
    """What `raw` looks like inside any base64 text, at each of the three byte alignments."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        start = (shift * 8 + 5) // 6  # first character no padding byte touches
        end = len(encoded) - (1 if (shift + len(raw)) % 3 else 0)  # the last may mix in a neighbour
        core = encoded[start:end]
        if len(core) >= MIN_B64_CORE:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def forms_of(secret: str) -> set[str]:
    """The secret, its URL-quoted form and its base64 forms."""
    if len(secret) < MIN_SECRET:
        return set()
    return {secret, urllib.parse.quote(secret, safe=""), *_base64_cores(secret.encode())}


def remember(*secrets: str | None) -> None:
    """Register secret values (None and very short values are ignored)."""
    global _pattern
    new = set().union(*(forms_of(s) for s in secrets if isinstance(s, str)))
    with _lock:
        if new - _forms:
            _forms.update(new)
            ordered = sorted(_forms, key=len, reverse=True)  # longest first: no partial leftovers
            _pattern = re.compile("|".join(map(re.escape, ordered)))


def forget_all() -> None:
    """Drop every registered secret (tests)."""
    global _pattern
    with _lock:
        _forms.clear()
        _pattern = None


def redact(text: str) -> str:
    """`text` with every registered secret form replaced by `***`."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def remember_docker_config(config: Mapping[str, Any] | str | None) -> None:
    """Every credential of a docker config.json: `auth` (and the password inside it), `password`,
    `identitytoken`, `registrytoken`."""
    if isinstance(config, str):
        import json

        try:
            config = json.loads(config)
        except (ValueError, RecursionError):
            remember(config)
            return
    if not isinstance(config, Mapping):
        return
    for entry in (config.get("auths") or {}).values() if isinstance(config.get("auths"), Mapping) else []:
        if not isinstance(entry, Mapping):
            continue
        remember(*(entry.get(k) for k in ("auth", "password", "identitytoken", "registrytoken")))
        try:
            user_pass = base64.b64decode(str(entry.get("auth") or ""), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        remember(user_pass, user_pass.partition(":")[2])


def remember_mapping_strings(data: Any, keys: Iterable[str]) -> None:
    """Every string value under any of `keys` anywhere in `data` (a kubeconfig's users, say)."""
    wanted = set(keys)
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, value in item.items():
                if key in wanted and isinstance(value, str):
                    remember(value)
                elif isinstance(value, (Mapping, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


KUBECONFIG_SECRET_KEYS = ("token", "password", "client-key-data", "client-certificate-data", "id-token",
                          "refresh-token", "client-secret")


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's problem, not a leak
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


_PREFECT_LOGGERS = ("", "prefect", "prefect.extra", "prefect.flow_runs", "prefect.task_runs", "prefect.workers")


def install_log_filter(logger_names: Iterable[str] = _PREFECT_LOGGERS) -> None:
    """Put the filter on every handler of these loggers (handlers see records from all children)."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
