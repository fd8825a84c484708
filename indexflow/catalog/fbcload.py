"""Reading a File-Based Catalog tree that someone else controls: one walker, one reader, one parser.

opm's `alpha/declcfg/load.go` walks the tree, skips what `.indexignore` files match (go-git's
gitignore rules: the last matching pattern decides, `!` re-includes) and decodes each file as a
stream of JSON or YAML documents. Every catalog reader here (`validate`, `merge`'s JSON
normalisation, the flow's reading of the Git checkout's `configs/`) goes through this module, so
the limits live in one place:

- the tree may hold only directories and regular files: a symbolic link, a hard link (it may share
  its inode with a file outside), a device, FIFO or socket is refused with one sentence naming the
  entry relative to the tree (opm follows links; a committed link would otherwise make the merge
  write outside the checkout, or quote a credentials file in an error);
- a file is opened with O_NOFOLLOW | O_NONBLOCK (nothing swapped in after the walk is followed, and
  a FIFO never blocks) and read up to `limits.max_file_bytes()`;
- YAML aliasing and nesting are bounded (`fastyaml.check_limits`), JSON nesting too;
- writes never follow an existing entry: `write_fresh` writes a new file and renames it over.
"""

from __future__ import annotations

import errno
import fnmatch
import gc
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from indexflow.catalog.limits import max_file_bytes
from indexflow.errors import CatalogError

IGNORE_FILE = ".indexignore"


class UnsafeTree(CatalogError):
    """A catalog tree holds something other than directories and regular files."""


class Invalid(CatalogError):
    """A catalog file does not decode (opm reports the first such error alone)."""


# --- walking ---------------------------------------------------------------------------------

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse(shown: str, what: str) -> UnsafeTree:
    if len(shown) > 200:  # a path thousands of levels deep: its root and its end say where
        shown = f"{shown.split('/', 1)[0]}/...{shown[-150:]}"
    return UnsafeTree(f"catalog entry {shown} is {what}; a catalog may hold only directories and regular files")


def check_root(root: Path) -> None:
    """The tree itself must be a real directory, not a link to one."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise CatalogError(f"config directory does not exist: {root.name}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(root.name, "not a directory" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode))


def walk(root: Path | str) -> Iterator[tuple[str, Path]]:
    """(path relative to `root`, path) of every regular file, depth first in byte order (as Go's
    fs.WalkDir), refusing anything else."""
    root = Path(root)
    check_root(root)
    yield from _walk(root, root.name, "")


def _walk(directory: Path, shown_root: str, rel: str) -> Iterator[tuple[str, Path]]:
    """Iterative (a tree thousands of levels deep must not exhaust Python's recursion)."""
    stack = [iter(_entries(directory, f"{shown_root}/{rel}"))]
    prefixes = [rel]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            prefixes.pop()
            continue
        sub = f"{prefixes[-1]}{entry.name}"
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            stack.append(iter(_entries(Path(entry.path), f"{shown_root}/{sub}")))
            prefixes.append(sub + "/")
        elif not stat.S_ISREG(st.st_mode):
            raise _refuse(f"{shown_root}/{sub}", _kind(st.st_mode))
        elif st.st_nlink > 1:
            raise _refuse(f"{shown_root}/{sub}", "a hard link")
        else:
            yield sub, Path(entry.path)


def _entries(directory: Path, shown: str) -> list[os.DirEntry]:
    """A directory's entries in byte order (Go's fs.WalkDir order)."""
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
    except OSError as exc:
        raise CatalogError(f"cannot read {shown.rstrip('/')}: {exc.strerror}") from None


def check_tree(root: Path | str) -> None:
    """Refuse the tree (one sentence) if it holds anything but directories and regular files."""
    for _ in walk(root):
        pass


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off while a catalog is loaded: parsing builds hundreds of thousands of
    dicts and lists, none in a cycle, and each generation-2 pass re-walks all of them (a third of
    a 7,000-bundle validation). Reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- reading ---------------------------------------------------------------------------------

def read_bytes(path: Path, shown: str, limit: int | None = None) -> bytes:
    """A regular file's bytes, up to `limit` (default: the manifest cap); never follows a link,
    never blocks on a FIFO, and refuses anything that is not a regular file when opened."""
    limit = max_file_bytes() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(shown, "a symbolic link") from None
        raise CatalogError(f"cannot read {shown}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(shown, _kind(st.st_mode))
        if st.st_size > limit:
            raise CatalogError(f"{shown} is larger than the {limit}-byte limit for one catalog file")
        data = fh.read(st.st_size + 1)  # its size (+1 to see growth), not a buffer of `limit` bytes per file
        if len(data) > st.st_size:
            data += fh.read(limit + 1 - len(data))
    if len(data) > limit:  # it grew while being read
        raise CatalogError(f"{shown} is larger than the {limit}-byte limit for one catalog file")
    return data


FILE_MODE = 0o644  # what write_fresh leaves


def holds(path: Path, data: bytes) -> bool:
    """Whether `path` is already what `write_fresh(path, data)` would leave: a plain FILE_MODE file
    holding `data` (a link, another mode or other bytes: no)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != FILE_MODE or st.st_size != len(data):
        return False
    with open(path, "rb") as fh:
        return fh.read(len(data) + 1) == data


def write_fresh(path: Path, data: bytes) -> None:
    """Write `data` as a new file and rename it over `path`: whatever entry `path` was (a link
    included) is replaced, never written through."""
    import tempfile  # only writers need it: `fbc validate`'s start-up does not pay for it

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".indexflow-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- .indexignore (go-git's gitignore matcher, as opm uses it) -------------------------------

@dataclass(frozen=True)
class _Pattern:
    domain: tuple[str, ...]  # directory of its .indexignore, relative to the root
    parts: tuple[str, ...]
    include: bool  # "!pattern"
    dir_only: bool  # "pattern/"
    anchored: bool  # has a "/": matched from the domain, part by part

    @classmethod
    def parse(cls, line: str, domain: tuple[str, ...]) -> "_Pattern":
        include = line.startswith("!")
        line = line[1:] if include else line
        if not line.endswith("\\ "):
            line = line.rstrip(" ")
        dir_only = line.endswith("/")
        line = line[:-1] if dir_only else line
        return cls(domain, tuple(line.split("/")), include, dir_only, "/" in line)

    def match(self, path: tuple[str, ...]) -> bool:
        """Does the pattern apply to the file `path` (parts relative to the root)?"""
        if len(path) <= len(self.domain) or path[:len(self.domain)] != self.domain:
            return False
        rest = path[len(self.domain):]
        return self._glob(rest) if self.anchored else self._name(rest)

    def _name(self, path: tuple[str, ...]) -> bool:
        """A pattern without "/" matches any element; `!` re-includes only the file itself."""
        for i, name in enumerate(path):
            if not _wild(self.parts[0], name):
                continue
            last = i == len(path) - 1
            if (self.dir_only and last) or (self.include and not last):
                continue
            return True
        return False

    def _glob(self, path: tuple[str, ...]) -> bool:
        """Element by element from the domain; `**` spans directories; a matched directory
        excludes (never re-includes) what is below it."""
        parts = [p for p in self.parts if p]
        i = 0
        for k, part in enumerate(parts):
            if part == "**":
                if k == len(parts) - 1:
                    return i < len(path) and not self.include
                nxt = parts[k + 1]
                while i < len(path) - 1 and not _wild(nxt, path[i]):
                    i += 1
                continue
            if i >= len(path) or not _wild(part, path[i]):
                return False
            i += 1
            if i == len(path) and k < len(parts) - 1:
                return False  # a file cannot match a directory glob
        if i == len(path):
            return not self.dir_only
        return not self.include


def _wild(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


class IgnoreRules:
    """All `.indexignore` patterns of a tree, in walk order; the last one that matches decides."""

    def __init__(self, patterns: list[_Pattern]) -> None:
        self.patterns = patterns

    @classmethod
    def of(cls, files: list[tuple[str, Path]], shown_root: str) -> "IgnoreRules":
        patterns = []
        for rel, path in files:
            parts = tuple(rel.split("/"))
            if parts[-1] != IGNORE_FILE:
                continue
            text = read_bytes(path, f"{shown_root}/{rel}").decode("utf-8", "replace")
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    patterns.append(_Pattern.parse(line, parts[:-1]))
        return cls(patterns)

    def ignored(self, rel: str) -> bool:
        path = tuple(rel.split("/"))
        for pattern in reversed(self.patterns):
            if pattern.match(path):
                return not pattern.include
        return False


def catalog_files(root: Path | str) -> list[tuple[str, Path]]:
    """(relative path, path) of the files opm would read: not `.indexignore`, not ignored."""
    root = Path(root)
    files = list(walk(root))
    rules = IgnoreRules.of(files, root.name)
    return [(rel, path) for rel, path in files
            if rel.rsplit("/", 1)[-1] != IGNORE_FILE and not rules.ignored(rel)]


# --- decoding --------------------------------------------------------------------------------

def read_text(path: Path, shown: str) -> str:
    """A catalog file as text (invalid UTF-8 replaced, as Go's decoder sees it)."""
    return read_bytes(path, shown).decode("utf-8", errors="replace")


def documents(text: str) -> Iterator[Any]:
    """A file is concatenated JSON (when it starts with `{`) or `---`-separated YAML documents.

    Raises Invalid with opm's texts; nothing deeper than MAX_DEPTH or aliased beyond go-yaml's
    budget is built."""
    if text.lstrip().startswith("{"):
        yield from _json_documents(text)
        return
    chunk: list[str] = []
    for line in text.splitlines(keepends=True) + ["---\n"]:
        if line.startswith("---") and (line[3:].strip() == "" or line[3:].strip().startswith("#")):
            if chunk:
                yield _yaml("".join(chunk))
            chunk = []
        else:
            chunk.append(line)


def _json_documents(text: str) -> Iterator[Any]:
    decoder, i = json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise Invalid("unexpected EOF" if exc.pos >= len(text.rstrip()) else str(exc)) from None
        except RecursionError:
            raise Invalid("json: exceeded max depth") from None
        yield obj


def _yaml(text: str) -> Any:
    """One YAML document; PyYAML is imported here, so a JSON catalog (what migrate writes) never
    pays its import in `fbc validate`'s start-up."""
    import yaml

    from indexflow.catalog.fastyaml import YamlLimitError, check_limits

    try:
        check_limits(text)
        return yaml.load(text, Loader=yaml.SafeLoader)  # what validate always used: its error texts are opm's
    except YamlLimitError as exc:
        raise Invalid(f"error converting YAML to JSON: {exc}") from None
    except RecursionError:
        raise Invalid("error converting YAML to JSON: yaml: exceeded max depth") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"error converting YAML to JSON: {str(exc).splitlines()[0]}") from None

