"""Operator commands: `indexflow setup CONFIG.yaml` and `indexflow iib-api --port N`.

Both import their Prefect / web-server parts inside the handler, so the rest of the CLI stays fast
and the core package keeps its no-Prefect rule.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    setup = subparsers.add_parser(
        "setup", help="create/update blocks, secrets, concurrency limits and work pools from one YAML file")
    setup.add_argument("config", type=Path, help="setup YAML (see deployments/setup.example.yaml)")
    setup.add_argument("--check", action="store_true", help="validate the file and its secrets, write nothing")
    setup.set_defaults(func=_setup)
    api = subparsers.add_parser(
        "iib-api", help="serve IIB's REST API (merge-index-image, builds, logs, healthcheck) over the Prefect deployment")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--deployment", default=None,
                     help="flow/deployment to run (default merge-index-image/merge-index-image)")
    api.add_argument("--settings", default=None, help="MergeSettings block used for validation (default indexflow)")
    api.add_argument("--tls-cert", default=None, help="PEM certificate to serve HTTPS (default iib_api.tls_cert)")
    api.add_argument("--tls-key", default=None, help="PEM key of --tls-cert (default iib_api.tls_key)")
    api.set_defaults(func=_iib_api)


def _setup(args: argparse.Namespace) -> int:
    from blocks.setup import run_setup

    for line in run_setup(args.config, check_only=args.check):
        print(line)
    return 0


def _iib_api(args: argparse.Namespace) -> int:
    """TLS and login are read from the settings block once, and refused if unsafe, before serving."""
    import uvicorn

    from indexflow.app.iib_api import ApiConfig, api_settings, create_app
    from indexflow.app.iib_auth import authenticator, check_tls
    from indexflow.app.iib_prefect import read_settings_sync

    config = ApiConfig.from_env(deployment=args.deployment, settings_block=args.settings)
    settings = api_settings(read_settings_sync(config))
    cert, key = args.tls_cert or settings.tls_cert, args.tls_key or settings.tls_key
    check_tls(args.host, cert, key)
    app = create_app(config, authenticator(settings, args.host))
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=cert, ssl_keyfile=key,
                log_level=os.environ.get("INDEXFLOW_API_LOG_LEVEL", "info"))
    return 0
