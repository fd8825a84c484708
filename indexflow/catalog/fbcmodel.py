"""The package/channel/bundle model both `migrate` and `validate` check, with opm's messages.

opm validates a catalog by building one model and collecting every problem into a tree of
errors; migrate runs the same checks before writing. Keeping one implementation means a db
that migrates cleanly produces a directory that validates, as with opm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from indexflow.catalog.semver_go import SemverError, Version, _pre_part


@dataclass
class Bundle:
    """What the graph and bundle checks look at (blobs stay out: they are not validated)."""

    name: str
    version: str
    replaces: str = ""
    skips: list[str] = field(default_factory=list)
    skip_range: str = ""
    image: str = ""
    package_props: int = 1
    has_objects: bool = False
    package: str = ""
    release: str = ""  # olm.package `release` (opm >= 1.62): part of the version string and the name
    deprecation: str | None = None  # the message of an olm.deprecations entry naming this bundle

    def version_string(self) -> str:
        """opm's VersionString: `<version>-<release>` when the bundle has a release."""
        return f"{self.version}-{self.release}" if self.release else self.version

    def normalized_name(self) -> str:
        """A bundle with a release must be named `<package>-v<version>-<release>`."""
        return f"{self.package}-v{self.version_string()}" if self.release else self.name


@dataclass
class Channel:
    name: str
    bundles: dict[str, Bundle] = field(default_factory=dict)
    deprecation: str | None = None


@dataclass
class Package:
    name: str
    default_channel: str
    channels: dict[str, Channel] = field(default_factory=dict)
    deprecation: str | None = None
    bundle_names: set[str] = field(default_factory=set)  # every olm.bundle of the package


@dataclass
class Node:
    """One error: a message with (possibly) child errors."""

    msg: str
    children: list["Node"] = field(default_factory=list)

    def render(self) -> str:
        """opm's tree text: `msg:` then children drawn with ├── / └── connectors."""
        if not self.children:
            return self.msg
        lines = [self.msg + ":"]
        for i, child in enumerate(self.children):
            last = i == len(self.children) - 1
            first, *rest = child.render().split("\n")
            lines.append(("└── " if last else "├── ") + first)
            lines.extend(("    " if last else "│   ") + line for line in rest)
        return "\n".join(lines)

    def leaves(self, trail: tuple[str, ...] = ()) -> list[list[str]]:
        """Every root-to-leaf path of messages (how the conformance corpus compares trees)."""
        here = trail + (self.msg,)
        if not self.children:
            return [list(here)]
        return [leaf for child in self.children for leaf in child.leaves(here)]


# --- blang/semver ranges (skipRange) -------------------------------------------------------

_COMPARATORS = {"", "=", "==", ">", ">=", "<", "<=", "!", "!="}


def _split_and_trim(text: str) -> list[str]:
    """blang's splitter: spaces split parts unless they follow a comparator character."""
    parts: list[str] = []
    last, last_char = 0, ""
    for i, ch in enumerate(text):
        if ch == " " and last_char not in (">", "<", "="):
            if last < i - 1:
                parts.append(text[last:i])
            last = i + 1
        elif ch != " ":
            last_char = ch
    if last < len(text) - 1:
        parts.append(text[last:])
    return [p.replace(" ", "") for p in parts]


def _split_comparator(part: str) -> tuple[str, str]:
    for i, ch in enumerate(part):
        if ch.isdigit():
            return part[:i].strip(), part[i:]
    raise SemverError(f"Could not get version from string: {_goq(part)}")


def _flat_wildcard(version: str) -> str:
    flat = version.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    return flat + ".0" if len(flat.split(".")) == 2 else flat


def check_range(text: str) -> None:
    """Raise SemverError with blang's message when `text` is not a valid version range."""
    parts = _split_and_trim(text)
    groups: list[list[str]] = [[]]
    for i, part in enumerate(parts):
        if part == "||":
            if i == 0:
                raise SemverError("First element in range is '||'")
            groups.append([])
        else:
            groups[-1].append(part)
    if parts and parts[-1] == "||" or not parts:
        raise SemverError("Last element in range is '||'")
    for group in groups:
        for part in group:
            if "x" in part:
                op, ver = _split_comparator(part)
                part = (">=" if op in (">", ">=", "!=", "!") else "<") + _flat_wildcard(ver)
            op, ver = _split_comparator(part)
            if op not in _COMPARATORS:
                raise SemverError(f"Could not parse Range {_goq(part)}: Could not parse comparator "
                                  f"{_goq(op)} in {_goq(op + ver)}")
            try:
                parse_version(ver)
            except SemverError as exc:
                raise SemverError(f"Could not parse Range {_goq(part)}: Could not parse version "
                                  f"{_goq(ver)} in {_goq(op + ver)}: {exc}") from None


@functools.lru_cache(maxsize=4096)  # a bundle in several channels brings its range to each
def _range_error(text: str) -> str | None:
    """check_range's message for `text`, or None."""
    try:
        check_range(text)
    except SemverError as exc:
        return str(exc)
    return None


def parse_release(text: str) -> tuple:
    """opm's NewRelease: at most 20 characters of dot-separated prerelease identifiers ("" = none)."""
    if not text:
        return ()
    if len(text) > 20:
        raise SemverError(f"invalid release {goq(text)}: exceeds maximum length of 20 characters")
    parts, errs = [], []
    for i, segment in enumerate(text.split(".")):
        try:
            parts.append(_pre_part(segment))
        except SemverError as exc:
            errs.append(f"segment {i}: {exc}")
    if errs:
        raise SemverError(f"invalid release {goq(text)}: " + "\n".join(errs))
    return tuple(parts)


def parse_version(text: str) -> Version:
    if not text:
        raise SemverError("Version string empty")
    return Version.parse(text)


def goq(text: str) -> str:
    """Go's %q for the plain strings these messages quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_goq = goq


# --- validation ---------------------------------------------------------------------------


def validate_bundle(b: Bundle) -> list[Node]:
    if b.name and not b.release and b.package_props == 1 and (b.image or b.has_objects) and b.deprecation is None \
            and "" not in b.skips and (not b.skip_range or _range_error(b.skip_range) is None):
        return []  # the usual bundle, none of the checks below can fail (no release: its name is its normalized name)
    errs: list[Node] = []
    if not b.name:
        errs.append(Node("name must be set"))
    if b.name != b.normalized_name():
        errs.append(Node(f"name {_goq(b.name)} does not match normalized name {_goq(b.normalized_name())}"))
    errs += [Node(f"skip[{i}] is empty") for i, s in enumerate(b.skips) if not s]
    if b.skip_range:
        err = _range_error(b.skip_range)
        if err:
            errs.append(Node(f"invalid skipRange {_goq(b.skip_range)}: {err}"))
    if b.package_props != 1:
        errs.append(Node('must be exactly one property with type "olm.package"'))
    if not b.image and not b.has_objects:
        errs.append(Node("bundle image must be set"))
    errs += _deprecation_errors(b.deprecation)
    if b.release and "+" in b.version:
        errs.append(Node("cannot use build metadata in version with a release version"))
    return errs


def _deprecation_errors(message: str | None) -> list[Node]:
    """A deprecation (from an olm.deprecations entry) must carry a message."""
    return [Node("invalid deprecation: message must be set")] if message == "" else []


def channel_head(ch: Channel) -> tuple[str | None, Node | None]:
    incoming = {b.replaces for b in ch.bundles.values()}
    for b in ch.bundles.values():
        incoming.update(b.skips)
    heads = sorted(n for n in ch.bundles if n not in incoming)
    if not heads:
        return None, Node("no channel head found in graph")
    if len(heads) > 1:
        return None, Node("multiple channel heads found in graph: " + ", ".join(heads))
    return heads[0], None


def _replaces_chain(ch: Channel) -> Node | None:
    """Walk replaces from the head (stopping at a skipped target, opm >= 1.58); report cycles and strays."""
    head, err = channel_head(ch)
    if err:
        return err
    skipped = {s for b in ch.bundles.values() for s in b.skips}
    # walked[i] is the i-th step's `replaces`; a bundle first reached before step k has the path
    # [name] + walked[k:] (one list, not a copy per bundle: semver channels are thousands long)
    walked: list[str] = []
    first_step: dict[str, int] = {}
    on_chain = {head}
    cur = ch.bundles.get(head)
    while cur is not None:
        first_step.setdefault(cur.name, len(walked))
        walked.append(cur.replaces)
        if cur.replaces in on_chain:
            cycle = [cur.replaces] + walked[first_step[cur.replaces]:]
            return Node("detected cycle in replaces chain of upgrade graph: " + " -> ".join(cycle))
        on_chain.add(cur.replaces)
        if cur.replaces in skipped:
            break
        cur = ch.bundles.get(cur.replaces)
    stranded = sorted(set(ch.bundles) - on_chain - skipped)
    if stranded:
        return Node("channel contains one or more stranded bundles: " + ", ".join(stranded))
    return None


def validate_channel(ch: Channel) -> list[Node]:
    errs: list[Node] = []
    if not ch.name:
        errs.append(Node("channel name must not be empty"))
    if not ch.bundles:
        errs.append(Node("channel must contain at least one bundle"))
    else:
        chain = _replaces_chain(ch)
        if chain:
            errs.append(chain)
    for b in ch.bundles.values():
        sub = validate_bundle(b)
        if sub:
            errs.append(Node(f"invalid bundle {_goq(b.name)}", sub))
    return errs + _deprecation_errors(ch.deprecation)


def _duplicate_versions(pkg: Package) -> Node | None:
    by_version: dict[str, set[str]] = {}
    for ch in pkg.channels.values():
        for b in ch.bundles.values():
            by_version.setdefault(b.version_string(), set()).add(b.name)
    dups = {v: names for v, names in by_version.items() if len(names) > 1}
    if not dups:
        return None
    ordered = sorted(dups)  # opm sorts the version strings as strings
    text = " ".join(f"{{{v}: [{', '.join(sorted(dups[v]))}]}}" for v in ordered)
    return Node(f"duplicate versions found in bundles: [{text}]")


def validate_package(pkg: Package) -> list[Node]:
    errs: list[Node] = []
    if not pkg.name:
        errs.append(Node("package name must not be empty"))
    if not pkg.default_channel:
        errs.append(Node("default channel must be set"))
    if not pkg.channels:
        errs.append(Node("package must contain at least one channel"))
    for ch in pkg.channels.values():
        sub = validate_channel(ch)
        if sub:
            errs.append(Node(f"invalid channel {_goq(ch.name)}", sub))
    dup = _duplicate_versions(pkg)
    if dup:
        errs.append(dup)
    if pkg.default_channel and pkg.default_channel not in pkg.channels:
        errs.append(Node(f"default channel {_goq(pkg.default_channel)} not found in channels list"))
    return errs + _deprecation_errors(pkg.deprecation)


def validate_model(packages: list[Package], root: str = "invalid index") -> Node | None:
    """The whole error tree, or None when the model is valid."""
    children = []
    for pkg in packages:
        sub = validate_package(pkg)
        if sub:
            children.append(Node(f"invalid package {_goq(pkg.name)}", sub))
    return Node(root, children) if children else None
