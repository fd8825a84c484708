"""`IibApiSettings`: how `indexflow iib-api` serves IIB clients (TLS, login, who may do what).

A plain pydantic model (no Prefect import) kept as the `iib_api` field of the MergeSettings block, so
the service reads it over the Prefect REST API and operators set it in the same setup file. Command
line options of `indexflow iib-api` override the TLS paths.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IibApiSettings(BaseModel):
    """Settings of the IIB-compatible HTTP service (IIB's Apache + Flask config, in one place)."""

    model_config = ConfigDict(extra="forbid")

    tls_cert: str | None = Field(default=None, description="PEM certificate (chain) served over HTTPS")
    tls_key: str | None = Field(default=None, description="PEM private key of tls_cert")
    auth: Literal["kerberos", "proxy", "none"] = Field(
        default="none", description="kerberos: SPNEGO checked with keytab; proxy: user header from "
                                    "proxy_addresses; none: loopback only, no users")
    keytab: str | None = Field(default=None, description="keytab with the HTTP/<host> service key (kerberos)")
    service_principal: str | None = Field(
        default=None, description="acceptor principal, e.g. HTTP/iib.example.com@REALM (default: any in keytab)")
    proxy_addresses: list[str] = Field(
        default_factory=list, description="addresses/CIDRs of the fronting proxies trusted to set proxy_user_header")
    proxy_user_header: str = Field(default="X-Remote-User", description="header carrying the proxy's REMOTE_USER")
    privileged_users: dict[str, list[str]] = Field(
        default_factory=dict, description="user -> target repository patterns (fnmatch) they may use "
                                          "overwrite_target_index on; nobody else may")
    max_builds_in_flight_per_user: int = Field(
        default=0, ge=0, description="builds one user may have in progress at once (0: no limit)")
    request_id_offset: int = Field(
        default=0, ge=0, description="ids start after this number (pick one above the last id your IIB used)")
    retry_window_seconds: int = Field(
        default=600, ge=0, description="an identical POST by the same user within this window is the same build")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="larger request bodies answer 413")
    max_per_page: int = Field(default=20, ge=1, le=100, description="IIB_MAX_PER_PAGE for GET /builds")
