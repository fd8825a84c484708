"""The sandbox registry itself: own config (never the packaged one), clean stop, clear missing-binary error."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from indexflow.errors import IndexflowError
from indexflow.registry.auth import DockerAuth
from sandbox.registry import LocalRegistry


def test_generated_config_and_clean_stop() -> None:
    registry = LocalRegistry().start()
    root, proc = registry.root, registry._proc
    config = yaml.safe_load((root / "config.yml").read_text())
    assert "auth" not in config and config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"].startswith(str(root))
    assert config["http"]["addr"] == registry.host and registry.host.startswith("127.0.0.1:")
    assert httpx.get(f"{registry.url}/v2/", timeout=5).status_code == 200
    registry.stop()
    assert proc.poll() is not None and not root.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{registry.url}/v2/", timeout=2)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def test_registry_runs_with_the_go_runtime_settings_and_a_callers_own_win(monkeypatch) -> None:  # noqa: ANN001
    """GOGC/GOMEMLIMIT halve the registry's CPU per blob GET on a shared box (GO_RUNTIME's comment)."""
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    with LocalRegistry() as registry:
        env = _environ(registry._proc.pid)
        assert (env.get("GOGC"), env.get("GOMEMLIMIT")) == ("off", "256MiB")
        assert httpx.get(f"{registry.url}/v2/", timeout=5).status_code == 200
    monkeypatch.setenv("GOGC", "150")
    with LocalRegistry() as registry:
        env = _environ(registry._proc.pid)
        assert (env.get("GOGC"), env.get("GOMEMLIMIT")) == ("150", "256MiB")


def test_htpasswd_variant_writes_a_docker_config(monkeypatch) -> None:  # noqa: ANN001
    with LocalRegistry(htpasswd_users={"carol": "pw-carol"}) as registry:
        assert registry.url.startswith("https://") and registry.ca_file.is_file()
        auths = json.loads(registry.auth_config_path.read_text())["auths"]
        assert list(auths) == [registry.host]
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(registry.auth_config_path))
        assert DockerAuth.from_config(None).credentials(registry.host).username == "carol"


def test_missing_binary_is_one_sentence(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(IndexflowError, match=r"^the docker-registry binary is not installed; install it with "
                                             r"`sudo apt-get install docker-registry`"):
        LocalRegistry().start()


def test_registry_dies_with_a_killed_parent(tmp_path) -> None:  # noqa: ANN001
    """A SIGKILLed test or bench process must not leave its docker-registry running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import sys; from sandbox.registry import LocalRegistry; r = LocalRegistry(root=sys.argv[1]).start();"
              " print(r.url, flush=True); import time; time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "reg")], stdout=subprocess.PIPE,
                              text=True, cwd=os.getcwd())
    url = parent.stdout.readline().strip()
    assert httpx.get(f"{url}/v2/", timeout=5).status_code == 200
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v2/", timeout=1)
        except httpx.TransportError:
            return
        time.sleep(0.2)
    pytest.fail(f"docker-registry at {url} outlived its killed parent")
