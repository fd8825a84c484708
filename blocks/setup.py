"""`indexflow setup CONFIG.yaml`: one operator file -> every block, secret, limit and work pool a merge needs.

The YAML never holds a secret: each secret names an environment variable (`from_env`) or a file
(`from_file`) and is read at setup time, so the config file can live in Git next to prefect.yaml.
Everything is created or overwritten by name, so running setup twice is harmless.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import PrefectHTTPStatusError
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_API_URL, get_current_settings
from prefect_gitlab import GitLabCredentials
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from blocks.automations import apply_automations
from blocks.settings import MergeSettings
from indexflow import datafile
from indexflow.errors import IndexflowError

# prefect_kubernetes costs ~1 s to import (the kubernetes clients) and the batch flow imports this
# module for read_yaml_file only: the functions that write or probe Kubernetes blocks import it.

REPO_DIR = Path(__file__).resolve().parent.parent
KNOWN_SECTIONS = {"settings", "gitlab", "kubernetes", "registry_auth", "secrets", "concurrency_limits",
                  "work_pools", "automations", "results"}
CREDENTIAL_FIELDS = {"gitlab": "gitlab_credentials", "kubernetes": "kubernetes_credentials",
                     "registry_auth": "registry_auth_secret"}


class SetupError(IndexflowError):
    """The setup config is wrong (names the key at fault) or a secret it points to cannot be read."""


# -- reading the config ------------------------------------------------------------------------
def read_yaml_file(path: Path, what: str, error: type[IndexflowError]) -> Any:
    """An operator's YAML file; unreadable, malformed or hostile -> one sentence naming the file."""
    return datafile.load(path, what, error)


def read_secret(where: str, ref: Any, base_dir: Path) -> str:
    """A secret from `{from_env: NAME}` or `{from_file: PATH}`; anything else (an inline value) is refused."""
    if not isinstance(ref, dict) or len(ref) != 1 or not ({"from_env", "from_file"} & ref.keys()):
        raise SetupError(f"{where} must be {{from_env: VARIABLE}} or {{from_file: PATH}}; "
                         "secrets are never written in the config file itself")
    if "from_env" in ref:
        value = os.environ.get(str(ref["from_env"]), "")
        if not value:
            raise SetupError(f"{where}: environment variable {ref['from_env']} is not set or empty")
        return value
    path = (base_dir / Path(str(ref["from_file"])).expanduser())
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SetupError(f"{where}: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SetupError(f"{where}: cannot read {path} (not UTF-8 text)") from None
    if not value:
        raise SetupError(f"{where}: {path} is empty")
    return value


def _section(config: dict, key: str) -> dict:
    value = config.get(key) or {}
    if not isinstance(value, dict):
        raise SetupError(f"'{key}' must be a mapping")
    return value


def _block_name(section: dict, key: str) -> str:
    name = section.get("name")
    if not isinstance(name, str) or not name:
        raise SetupError(f"'{key}.name' (the block name) is required")
    return name


def _unexpected(section: dict, key: str, allowed: set[str]) -> None:
    extra = sorted(set(section) - allowed)
    if extra:
        raise SetupError(f"'{key}' has unknown key(s): {', '.join(extra)}")


@dataclass
class Plan:
    """What setup will write, all secrets already read (kept out of repr)."""

    settings_name: str
    settings: dict[str, Any]
    gitlab: tuple[str, str, str] | None = field(default=None, repr=False)  # name, url, token
    kubernetes: tuple[str, dict, str | None] | None = field(default=None, repr=False)  # name, kubeconfig, ctx
    registry_auth: tuple[str, str] | None = field(default=None, repr=False)  # name, config.json text
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    concurrency_limits: dict[str, int] = field(default_factory=dict)
    work_pools: dict[str, dict] = field(default_factory=dict)
    notification_block: str | None = None  # `<block type slug>/<name>` the automations notify through
    results: dict[str, str] | None = None  # {"name", "basepath"} (LocalFileSystem) or {"block": "type/name"}


def load_config(path: Path) -> Plan:
    """Parse and check the YAML, read every secret it points to; nothing is written yet."""
    config = read_yaml_file(path, "setup config", SetupError)
    if not isinstance(config, dict):
        raise SetupError(f"setup config {path} must be a YAML mapping")
    unknown = sorted(set(config) - KNOWN_SECTIONS)
    if unknown:
        raise SetupError(f"setup config has unknown section(s): {', '.join(unknown)}")
    base = path.resolve().parent
    settings_sec = _section(config, "settings")
    _unexpected(settings_sec, "settings", {"name", "values"})
    plan = Plan(settings_name=_block_name(settings_sec, "settings"), settings=dict(_section(settings_sec, "values")))
    plan.gitlab = _gitlab(_section(config, "gitlab"), base)
    plan.kubernetes = _kubernetes(_section(config, "kubernetes"), base)
    plan.registry_auth = _registry_auth(_section(config, "registry_auth"), base)
    plan.secrets = {name: read_secret(f"secrets.{name}", ref, base)
                    for name, ref in _section(config, "secrets").items()}
    plan.concurrency_limits = _limits(_section(config, "concurrency_limits"))
    plan.work_pools = _work_pools(_section(config, "work_pools"), base)
    plan.notification_block = _notification_block(_section(config, "automations"))
    plan.results = _results(_section(config, "results"), base)
    _fill_credentials(plan)
    _check_settings(plan)
    return plan


def _gitlab(sec: dict, base: Path) -> tuple[str, str, str] | None:
    if not sec:
        return None
    _unexpected(sec, "gitlab", {"name", "url", "token"})
    url = sec.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise SetupError("'gitlab.url' must be the http(s) URL of the GitLab instance")
    return _block_name(sec, "gitlab"), url, read_secret("gitlab.token", sec.get("token"), base)


def _kubernetes(sec: dict, base: Path) -> tuple[str, dict, str | None] | None:
    if not sec:
        return None
    _unexpected(sec, "kubernetes", {"name", "kubeconfig", "context"})
    text = read_secret("kubernetes.kubeconfig", sec.get("kubeconfig"), base)
    try:
        kubeconfig = yaml.safe_load(text)
    except yaml.YAMLError:
        kubeconfig = None
    if not isinstance(kubeconfig, dict) or not kubeconfig.get("contexts"):
        raise SetupError("kubernetes.kubeconfig does not hold a kubeconfig with at least one context")
    context = sec.get("context") or kubeconfig.get("current-context")
    names = [c.get("name") for c in kubeconfig["contexts"] if isinstance(c, dict)]
    if context not in names:
        raise SetupError(f"kubernetes.context {context!r} is not one of the kubeconfig's contexts {names}")
    return _block_name(sec, "kubernetes"), kubeconfig, context


def _registry_auth(sec: dict, base: Path) -> tuple[str, str] | None:
    if not sec:
        return None
    _unexpected(sec, "registry_auth", {"name", "docker_config"})
    text = read_secret("registry_auth.docker_config", sec.get("docker_config"), base)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("auths", {}), dict):
        raise SetupError("registry_auth.docker_config is not a docker config.json (a JSON object with 'auths')")
    return _block_name(sec, "registry_auth"), text


def _limits(sec: dict) -> dict[str, int]:
    for name, limit in sec.items():
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise SetupError(f"concurrency_limits.{name} must be a positive integer (the number of slots)")
    return {str(k): v for k, v in sec.items()}


def _work_pools(sec: dict, base: Path) -> dict[str, dict]:
    pools = {}
    for name, spec in sec.items():
        spec = spec or {}
        if not isinstance(spec, dict) or spec.get("type") not in ("process", "kubernetes"):
            raise SetupError(f"work_pools.{name}.type must be 'process' or 'kubernetes'")
        _unexpected(spec, f"work_pools.{name}", {"type", "base_job_template", "concurrency_limit"})
        template = None
        if spec.get("base_job_template"):
            template_path = base / str(spec["base_job_template"])
            try:
                template = json.loads(template_path.read_text())
            except (OSError, ValueError):
                raise SetupError(f"work_pools.{name}.base_job_template: {template_path} is not a readable "
                                 "JSON job template") from None
        pools[str(name)] = {"type": spec["type"], "template": template,
                            "concurrency_limit": spec.get("concurrency_limit")}
    return pools


def _notification_block(sec: dict) -> str | None:
    _unexpected(sec, "automations", {"notification_block"})
    block = sec.get("notification_block")
    if block is not None and (not isinstance(block, str) or "/" not in block):
        raise SetupError("automations.notification_block must be '<block type slug>/<block name>', "
                         "e.g. slack-webhook/release-engineering")
    return block


def _results(sec: dict, base: Path) -> dict[str, str] | None:
    """Where flow results are persisted: a LocalFileSystem block setup writes, or an existing block."""
    if not sec:
        return None
    _unexpected(sec, "results", {"name", "basepath", "block"})
    if "block" in sec:
        if set(sec) != {"block"} or not isinstance(sec["block"], str) or "/" not in sec["block"]:
            raise SetupError("'results.block' names an existing storage block as TYPE/NAME "
                             "(e.g. s3-bucket/indexflow-results), alone")
        return {"block": sec["block"]}
    basepath = sec.get("basepath")
    if not isinstance(basepath, str) or not basepath:
        raise SetupError("'results.basepath' (a directory every worker and reader shares) is required")
    return {"name": _block_name(sec, "results"), "basepath": str(base / Path(basepath).expanduser())}


def _fill_credentials(plan: Plan) -> None:
    """The settings block names its credential blocks; default them to the blocks this file creates."""
    created = {"gitlab": plan.gitlab, "kubernetes": plan.kubernetes, "registry_auth": plan.registry_auth}
    for section, settings_field in CREDENTIAL_FIELDS.items():
        if created[section] and settings_field not in plan.settings:
            plan.settings[settings_field] = created[section][0]


def _check_settings(plan: Plan) -> None:
    """Validate the MergeSettings values now, so a typo fails before anything is written."""
    try:
        MergeSettings(**plan.settings)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "values"
        raise SetupError(f"settings.values.{where}: {err['msg']}") from None


# -- writing it --------------------------------------------------------------------------------
def register_block_types() -> list[str]:
    """Block types the UI shows in its catalog and the flow loads by slug."""
    from prefect_kubernetes.credentials import KubernetesCredentials  # ~1 s: see above

    types: tuple[type[Block], ...] = (MergeSettings, Secret, GitLabCredentials, KubernetesCredentials)
    for block_cls in types:
        block_cls.register_type_and_schema()
    return [f"block type {t.get_block_type_slug()}" for t in types]


def apply(plan: Plan) -> list[str]:
    """Write the plan to the Prefect API; returns one line per object written (no secret values)."""
    done = register_block_types()
    if plan.gitlab:
        done.append(_save_gitlab(*plan.gitlab))
    if plan.kubernetes:
        done.append(_save_kubernetes(*plan.kubernetes))
    if plan.registry_auth:
        Secret(value=SecretStr(plan.registry_auth[1])).save(plan.registry_auth[0], overwrite=True)
        done.append(f"secret {plan.registry_auth[0]} (docker config.json)")
    for name, value in plan.secrets.items():
        Secret(value=SecretStr(value)).save(name, overwrite=True)
        done.append(f"secret {name}")
    MergeSettings(**plan.settings).save(plan.settings_name, overwrite=True)
    done.append(f"merge settings {plan.settings_name}")
    done += _apply_limits_and_pools(plan)
    done += apply_automations(plan.notification_block, get_current_settings().flows.heartbeat_frequency or 180)
    if plan.results:
        done.append(_apply_results(plan.results))
    return done


def _apply_results(results: dict[str, str]) -> str:
    """Make the results block the server's default result storage: every persisted flow result goes there."""
    if "block" in results:
        try:
            block = Block.load(results["block"])
        except ValueError:
            raise SetupError(f"results.block {results['block']!r} does not exist") from None
        where = results["block"]
    else:
        block = LocalFileSystem(basepath=results["basepath"])
        block.save(results["name"], overwrite=True)
        block = LocalFileSystem.load(results["name"])
        where = f"local-file-system/{results['name']} ({results['basepath']})"
    with get_client(sync_client=True) as client:
        client.update_server_default_result_storage(block._block_document_id)
    return f"result storage {where} (the server's default)"


def _save_gitlab(name: str, url: str, token: str) -> str:
    GitLabCredentials(url=url, token=SecretStr(token)).save(name, overwrite=True)
    return f"gitlab credentials {name} ({url})"


def _save_kubernetes(name: str, kubeconfig: dict, context: str | None) -> str:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials  # ~1 s: see above

    cluster = KubernetesClusterConfig(config=kubeconfig, context_name=context)
    KubernetesCredentials(cluster_config=cluster).save(name, overwrite=True)
    return f"kubernetes credentials {name} (context {context})"


def _apply_limits_and_pools(plan: Plan) -> list[str]:
    done = []
    with get_client(sync_client=True) as client:
        for name, limit in plan.concurrency_limits.items():
            client.upsert_global_concurrency_limit_by_name(name, limit)
            done.append(f"concurrency limit {name} = {limit}")
        for name, pool in plan.work_pools.items():
            template = pool["template"] or _default_template(pool["type"])
            client.create_work_pool(WorkPoolCreate(name=name, type=pool["type"], base_job_template=template,
                                                   concurrency_limit=pool["concurrency_limit"]), overwrite=True)
            done.append(f"work pool {name} ({pool['type']})")
    return done


def _default_template(pool_type: str) -> dict:
    """The worker type's own job template. Its module is imported here only: the Kubernetes worker
    costs ~0.9 s to import, the process worker ~0.2 s, and only a pool without a template needs one."""
    if pool_type == "kubernetes":
        from prefect_kubernetes.worker import KubernetesWorker

        return KubernetesWorker.get_default_base_job_template()
    from prefect.workers.process import ProcessWorker

    return ProcessWorker.get_default_base_job_template()


def api_url() -> str:
    """The Prefect API setup writes to; without one Prefect would use a throwaway temporary server."""
    url = PREFECT_API_URL.value()
    if not url:
        raise SetupError("PREFECT_API_URL is not set (environment or Prefect profile): "
                         "setup needs the server the workers use")
    return url


# -- probing the endpoints (setup --check) ------------------------------------------------------
PROBE_TIMEOUT = 15.0


def probe_endpoints(plan: Plan) -> list[str]:
    """One line per endpoint the config names: does it answer, with these credentials? Never raises:
    a probe from the operator's machine may fail where the workers would succeed (firewalls)."""
    lines = []
    if plan.gitlab:
        lines.append(_probe("gitlab", plan.gitlab[1], lambda: _probe_gitlab(plan.gitlab[1], plan.gitlab[2])))
    if plan.kubernetes:
        namespace = plan.settings.get("konflux_namespace", "")
        lines.append(_probe("konflux", f"namespace {namespace}", lambda: _probe_konflux(plan.kubernetes, namespace)))
    insecure = set(plan.settings.get("insecure_registries") or [])
    for key in ("iib_registry", "index_db_artifact_registry"):
        host = str(plan.settings.get(key, "")).split("/", 1)[0]
        if host:
            lines.append(_probe("registry", f"{host} ({key})", lambda host=host: _probe_registry(host, host in insecure)))
    return lines


def _probe(kind: str, what: str, check: Any) -> str:
    try:
        detail = check()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return f"probe {kind} {what}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    except Exception as exc:  # noqa: BLE001 - a client library's own error (kubernetes ApiException...)
        status = getattr(exc, "status", None)
        return f"probe {kind} {what}: FAILED ({type(exc).__name__}{f' {status}' if status else ''})"
    return f"probe {kind} {what}: ok ({detail})"


def _probe_gitlab(url: str, token: str) -> str:
    response = httpx.get(f"{url.rstrip('/')}/api/v4/user", headers={"PRIVATE-TOKEN": token}, timeout=PROBE_TIMEOUT)
    if response.status_code != 200:
        raise ValueError(f"GET /api/v4/user answered HTTP {response.status_code}")
    return f"token of {response.json().get('username', '?')}"


def _probe_konflux(kubernetes: tuple[str, dict, str | None], namespace: str) -> str:
    """List one PipelineRun the way the merge's sensor reads them (prefect-kubernetes' async client)."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials  # ~1 s: see above

    _, kubeconfig, context = kubernetes
    credentials = KubernetesCredentials(cluster_config=KubernetesClusterConfig(config=kubeconfig,
                                                                               context_name=context))

    async def first_pipelinerun() -> dict:
        async with credentials.get_client("custom_objects") as api:
            return await api.list_namespaced_custom_object("tekton.dev", "v1", namespace, "pipelineruns", limit=1,
                                                           _request_timeout=PROBE_TIMEOUT)

    listed = asyncio.run(first_pipelinerun())
    return f"PipelineRuns readable, {len(listed.get('items', []))} listed"


def _probe_registry(host: str, insecure: bool) -> str:
    response = httpx.get(f"{'http' if insecure else 'https'}://{host}/v2/", timeout=PROBE_TIMEOUT)
    if response.status_code not in (200, 401):
        raise ValueError(f"GET /v2/ answered HTTP {response.status_code}")
    return "registry API answers" + (" (login required)" if response.status_code == 401 else "")


def run_setup(path: Path, check_only: bool = False) -> list[str]:
    """Entry point of `indexflow setup`: check everything first, then write (unless check_only)."""
    plan = load_config(path)
    if check_only:
        return [*_valid_line(path, plan), *probe_endpoints(plan)]
    url = api_url()
    try:
        return apply(plan)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise SetupError(f"the Prefect API at {url} failed during setup ({type(exc).__name__}); "
                         "objects before the failure were written, re-run setup when it is back") from None


def _valid_line(path: Path, plan: Plan) -> list[str]:
    results = plan.results.get("block") or plan.results["basepath"] if plan.results else None
    return [f"config {path} is valid: settings {plan.settings_name}, "
            f"{len(plan.secrets) + bool(plan.registry_auth)} secret(s), "
            f"{len(plan.concurrency_limits)} limit(s), {len(plan.work_pools)} work pool(s), "
            f"results {'in ' + results if results else 'not configured'}"]
