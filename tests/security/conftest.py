"""The proof suites' shared sandbox and Prefect API (tests/reliability/sandbox_session.py)."""

from tests.reliability.sandbox_session import clean_proxies, prefect_api, proxied_env  # noqa: F401
