"""Authentication enforced where production enforces it: the target index lives in a registry that
needs a bearer token for every read (IIB's `registry_auth_secret` credentials: pull only) and grants
push on the target repository only to the release user whose password is the overwrite token.

So a merge that reads without credentials fails, an overwrite made with the wrong credentials (or
with the token not attached to the target's client) is refused by the registry and rolled back, and
the token server's own record shows which user wrote the target. The rest of the sandbox (source,
outputs, index.db artifacts) stays on the anonymous registry, as the e2e suite has it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.blocks.system import Secret

from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from indexflow.registry.auth import DockerAuth
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from sandbox.demo_env import GIT_PROJECT
from sandbox.registry import LocalRegistry
from tests.e2e.conftest import E2E
from tests.flow.remote_state import RemoteState, snapshot

pytestmark = pytest.mark.e2e
INDEX_REPO, PROJECT = "rh-osbs/iib-pub-pending", "auth/index-configs"
USERS = {"iib": secrets.token_hex(12), "release": secrets.token_hex(12)}
GRANTS = {"iib": {"*": {"pull"}}, "release": {"rh-osbs/*": {"pull", "push"}}}


@dataclass
class Locked:
    registry: LocalRegistry
    target: str  # the target index, in the locked registry
    admin: RegistryClient  # the release user's client, for the test's own reads
    block: str  # MergeSettings with registry_auth_secret
    anonymous_block: str  # the same without it
    sb: E2E

    def digest(self, pullspec: str) -> str | None:
        return self.admin.find_digest(ImageRef.parse(pullspec))

    def state(self) -> RemoteState:
        """Tags of the anonymous registry and of the locked target, the auth project's refs and MRs."""
        env = self.sb.env
        base = snapshot(env.registry_url, env.stack.git, PROJECT, f"{env.gitlab_url}/api/v4", env.git_token)
        return RemoteState({**base.tags, self.target: self.digest(self.target) or ""}, base.refs, base.mrs)


def _docker_config(path: Path, host: str, user: str) -> Path:
    auth = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


@pytest.fixture(scope="module")
def locked(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locked]:
    env, gp = e2e.env, e2e.git_proxy
    work = tmp_path_factory.mktemp("locked")
    with LocalRegistry(bearer_users=USERS, bearer_grants=GRANTS) as registry:
        admin_auth = DockerAuth.from_config(_docker_config(work / "admin.json", registry.host, "release"))
        with RegistryClient(auth=admin_auth, insecure=(registry.host, env.registry_host)) as admin:
            target = f"{registry.host}/{INDEX_REPO}:auth"
            admin.copy(ImageRef.parse(env.seeded.target_index), ImageRef.parse(target))
            seeded_db = env.artifacts.pull(env.artifacts.canonical_ref(env.seeded.target_index))
            env.artifacts.push(env.artifacts.canonical_ref(target), seeded_db.path, {"request_id": "seed"})
            git_url = env.stack.publish_git_repo(PROJECT, env.stack.git.bare_path(GIT_PROJECT))
            Secret(value=_docker_config(work / "iib.json", registry.host, "iib").read_text()).save(
                "e2e-locked-registry", overwrite=True)
            settings = dict(
                insecure_registries=[registry.host],
                index_to_gitlab_push_map={f"{registry.host}/{INDEX_REPO}": git_url.replace(env.gitlab_url, gp.url)},
                no_ocp_label_allow_list=[f"{registry.host}/{INDEX_REPO}"])
            e2e.save_block("e2e-anonymous", **settings)
            e2e.save_block("e2e-locked", registry_auth_secret="e2e-locked-registry", **settings)
            yield Locked(registry, target, admin, "e2e-locked", "e2e-anonymous", e2e)


def _merge(locked: Locked, block: str, token: str | None, request_id: str):  # noqa: ANN202 - a Prefect State
    with local_overwrite_token(token):
        return merge_index_image(source_from_index=locked.sb.source, target_index=locked.target,
                                 overwrite_target_index=token is not None, ignore_bundle_ocp_version=True,
                                 settings_block=block, request_id=request_id, return_state=True)


def test_reads_without_registry_credentials_are_refused(locked: Locked) -> None:
    before = locked.state()
    state = _merge(locked, locked.anonymous_block, None, locked.sb.request_id("anon"))
    assert state.is_failed()
    assert locked.target in state.message and "unauthorized" in state.message.lower(), state.message
    locked.state().assert_same(before)


def test_overwrite_with_credentials_that_cannot_push_is_refused_and_undone(locked: Locked) -> None:
    before = locked.state()
    state = _merge(locked, locked.block, f"iib:{USERS['iib']}", locked.sb.request_id("pullonly"))
    assert state.is_failed()
    assert "Overwriting the index image" in state.message and "Rolled back" in state.message, state.message
    assert USERS["iib"] not in state.message
    locked.state().assert_same(before)


def test_overwrite_writes_the_target_as_the_token_user(locked: Locked) -> None:
    token_server = locked.registry.token_server
    first_token = len(token_server.issued_to)
    state = _merge(locked, locked.block, f"release:{USERS['release']}", locked.sb.request_id("release"))
    assert state.is_completed(), state.message
    output = state.result()["output_pullspecs"][0]
    assert locked.digest(locked.target) == locked.sb.env.registry_client.resolve(
        ImageRef.parse(output.replace(locked.sb.registry_proxy.host, locked.sb.env.registry_host, 1)))
    pushers = {user for user, scopes in token_server.issued_to[first_token:]
               if f"{INDEX_REPO}:pull,push" in scopes or f"{INDEX_REPO}:push,pull" in scopes}
    assert pushers == {"release"}, token_server.issued_to[first_token:]
