"""Run one hostile case in a child process with a ceiling on memory and time, and judge what it left.

A hostile input that exhausts memory or hangs must not take the test run down with it, so every
case runs in a subprocess with `RLIMIT_AS` (address space, default 1 GiB) and a wall-clock ceiling
(default 60 s; the whole process group is killed when it passes). The judges then check what the
issue asks of every case:

- `one_sentence(outcome)`: the case failed the way a user may see it: an `IndexflowError` printed as
  one line, exit status 1, no traceback, no kill by a signal, no timeout;
- `assert_no_secret(texts, secrets)`: no secret value in any output, nor any base64 form of it
  (also inside a longer base64 string such as a Basic header's `user:password`);
- `WriteWatch(root, allowed)`: nothing under `root` changed outside the `allowed` directories.

`run_python(code)` runs a snippet the way the CLI runs a command: an `IndexflowError` ends it with its
message on stderr and exit status 1; anything else shows its traceback (a bug).
`run_cli(*args)` runs `python -m indexflow.cli ...` (its `main` prints `Error: <sentence>`).
"""

from __future__ import annotations

import base64
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MEMORY = 1 << 30
DEFAULT_TIMEOUT = 60.0
MAX_SENTENCE = 1500

_RUNNER = """\
import sys
from indexflow.errors import IndexflowError
try:
    exec(compile({code!r}, "<hostile-case>", "exec"), {{"__name__": "__main__"}})
except IndexflowError as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


@dataclass(frozen=True)
class Outcome:
    """What a case's process did: exit status (negative: killed by that signal), outputs, wall time."""

    rc: int
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """For assertion messages: enough to see what went wrong without flooding the report."""
        return (f"rc={self.rc} timed_out={self.timed_out} elapsed={self.elapsed:.1f}s\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-4000:]}")


def _limits(memory: int, file_size: int | None):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if file_size is not None:  # a "full disk": writes past it fail with EFBIG instead of a signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return apply


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment plus `extra`; glibc arenas capped so threads do not eat the address space."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONBREAKPOINT", None)
    env.update(extra or {})
    return env


def run(argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
        memory: int = DEFAULT_MEMORY, timeout: float = DEFAULT_TIMEOUT, stdin: str | None = None,
        file_size: int | None = None) -> Outcome:
    """`argv` in its own process group under the ceilings; on timeout the whole group is killed.
    `file_size` caps every file the case writes (RLIMIT_FSIZE), which is how a full disk looks."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=str(cwd or REPO), env=child_env(env), text=True, start_new_session=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limits(memory, file_size))
    timed_out = False
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
    finally:
        _kill_group(proc.pid)  # whatever the case left running (servers, workers) goes too
    return Outcome(proc.returncode, stdout, stderr, time.monotonic() - started, timed_out)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(code: str, **kw: object) -> Outcome:
    """A snippet run the CLI's way (see the module docstring); keyword arguments as for `run`."""
    return run([sys.executable, "-c", _RUNNER.format(code=code)], **kw)  # type: ignore[arg-type]


def run_cli(*args: str, **kw: object) -> Outcome:
    """`python -m indexflow.cli *args` under the ceilings."""
    return run([sys.executable, "-m", "indexflow.cli", *args], **kw)  # type: ignore[arg-type]


# -- judges ------------------------------------------------------------------------------------
def one_sentence(outcome: Outcome, *fragments: str) -> str:
    """The case ended in one user-facing sentence (exit 1, one stderr line, no traceback) containing
    every fragment; returns that sentence."""
    assert not outcome.timed_out, f"the case hit the time ceiling\n{outcome.describe()}"
    assert outcome.rc == 1, f"expected exit status 1 (an IndexflowError)\n{outcome.describe()}"
    assert "Traceback" not in outcome.output, f"a traceback reached the user\n{outcome.describe()}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}\n{outcome.describe()}"
    sentence = lines[0]
    assert len(sentence) < MAX_SENTENCE, f"the message is {len(sentence)} characters long\n{outcome.describe()}"
    for fragment in fragments:
        assert fragment in sentence, f"{fragment!r} is not in the message\n{outcome.describe()}"
    return sentence


def succeeded(outcome: Outcome) -> str:
    """The case ran to completion (exit 0, no traceback); returns its stdout."""
    assert not outcome.timed_out and outcome.rc == 0, f"the case failed\n{outcome.describe()}"
    assert "Traceback" not in outcome.output, outcome.describe()
    return outcome.stdout


def secret_forms(value: str) -> set[str]:
    """`value` and the text its bytes show inside any base64 string (standard and URL-safe), at each of
    the three alignments, so `Basic base64(user:password)` is caught through the password alone."""
    raw = value.encode()
    forms = {value}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        start = (shift * 8 + 5) // 6  # first character no padding byte touches
        end = len(encoded) - (1 if (shift + len(raw)) % 3 else 0)  # last character may mix in a neighbour
        core = encoded[start:end]
        if len(core) >= 6:
            forms |= {core, core.replace("+", "-").replace("/", "_")}
    return forms


def assert_no_secret(texts: str | Outcome | Iterable[str | Outcome], secrets: Iterable[str]) -> None:
    """No secret (nor a base64 form of it) in any of `texts` (strings or case outcomes)."""
    items = [texts] if isinstance(texts, (str, Outcome)) else list(texts)
    joined = "\n".join(item.output if isinstance(item, Outcome) else item for item in items)
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in joined, f"a secret (form {form[:3]}...) is in the output"


def assert_no_secret_in_tree(root: Path, secrets: Iterable[str]) -> None:
    """No file under `root` holds a secret in any form (file names included)."""
    forms = {form.encode() for secret in secrets for form in secret_forms(secret)}
    for path in [root, *root.rglob("*")]:
        if any(form.decode() in str(path) for form in forms):
            raise AssertionError(f"a secret is in the file name {path}")
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert not any(form in data for form in forms), f"a secret is in {path}"


class WriteWatch:
    """Snapshot of every entry under `root`; `assert_clean()` fails if anything outside `allowed`
    appeared, vanished or changed (content size, mtime, type or link target) since."""

    def __init__(self, root: Path | str, allowed: Iterable[Path | str] = ()) -> None:
        self.root = Path(root)
        self.allowed = [Path(os.path.realpath(p)) for p in allowed]
        self.before = self._snapshot()

    def _snapshot(self) -> dict[str, tuple]:
        state = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                link = os.readlink(path) if os.path.islink(path) else None
                state[path] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
        return state

    def _allowed(self, path: str) -> bool:
        real = Path(os.path.realpath(os.path.dirname(path))) / os.path.basename(path)
        return any(real == a or a in real.parents for a in self.allowed)

    def changed(self) -> list[str]:
        after = self._snapshot()
        keys = set(self.before) | set(after)
        return sorted(p for p in keys if self.before.get(p) != after.get(p) and not self._allowed(p))

    def assert_clean(self) -> None:
        changed = self.changed()
        assert not changed, f"written outside the allowed directories: {changed[:10]}"


@dataclass(frozen=True)
class CaseDirs:
    """A private world for one case: HOME, TMPDIR, the indexflow cache and an output dir, all under
    `root`; `env` points the child at them and `watch()` allows writes only there."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> "CaseDirs":
        dirs = cls(root)
        for path in (dirs.home, dirs.tmp, dirs.cache, dirs.out):
            path.mkdir(parents=True, exist_ok=True)
        return dirs

    home = property(lambda self: self.root / "home")
    tmp = property(lambda self: self.root / "tmp")
    cache = property(lambda self: self.root / "cache")
    out = property(lambda self: self.root / "out")

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "TMPDIR": str(self.tmp), "INDEXFLOW_CACHE_DIR": str(self.cache),
                "PREFECT_HOME": str(self.home / ".prefect")}

    def watch(self, *extra_allowed: Path) -> WriteWatch:
        """Everything under `root` except tmp, cache, out and `extra_allowed` must stay as it is."""
        return WriteWatch(self.root, [self.tmp, self.cache, self.out, *extra_allowed])
