"""Semantic versions the way opm (blang/semver v4) parses, orders and prints them.

opm's error texts embed Go's `%+v` rendering of versions, and its head/default-channel choice
uses a build-metadata-aware ordering, so Python's `semver` package is not a drop-in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_IDENT = re.compile(r"^[0-9A-Za-z-]+$")


class SemverError(ValueError):
    """Text is not a semantic version (message = blang's)."""


def _num(text: str, what: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise SemverError(f"Invalid character(s) found in {what} number {text!r}".replace("'", '"'))
    if len(text) > 1 and text[0] == "0":
        raise SemverError(f'{what.capitalize()} number must not contain leading zeroes "{text}"')
    return int(text)


def _pre_part(text: str) -> int | str:
    if not text:
        raise SemverError("Prerelease is empty")
    if text.isdigit() and text.isascii():
        if len(text) > 1 and text[0] == "0":
            raise SemverError(f'Numeric PreRelease version must not contain leading zeroes "{text}"')
        return int(text)
    if not _IDENT.match(text):
        raise SemverError(f'Invalid character(s) found in prerelease "{text}"')
    return text


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        parts = text.split(".", 2)
        if len(parts) != 3:
            raise SemverError("No Major.Minor.Patch elements found")
        major = _num(parts[0], "major")
        minor = _num(parts[1], "minor")
        rest, _, build_text = parts[2].partition("+")
        patch_text, _, pre_text = rest.partition("-")
        patch = _num(patch_text, "patch")
        pre = tuple(_pre_part(p) for p in pre_text.split(".")) if "-" in rest else ()
        build: tuple[str, ...] = ()
        if "+" in parts[2]:
            build = tuple(build_text.split("."))
            for b in build:
                if not b:
                    raise SemverError("Build meta data is empty")
                if not _IDENT.match(b):
                    raise SemverError(f'Invalid character(s) found in build meta data "{b}"')
        return cls(major, minor, patch, pre, build)

    def precedence(self) -> tuple:
        """Sort key of semver precedence (build metadata ignored)."""
        return (self.major, self.minor, self.patch, _pre_key(self.pre))

    def __lt__(self, other: "Version") -> bool:  # semver precedence (build ignored)
        return self.precedence() < other.precedence()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.precedence() == other.precedence()

    def __hash__(self) -> int:
        return hash(self.precedence())

    def go_repr(self) -> str:
        """Go's `%+v` of a blang semver.Version."""
        pre = " ".join(
            f"{{VersionStr: VersionNum:{p} IsNum:true}}" if isinstance(p, int)
            else f"{{VersionStr:{p} VersionNum:0 IsNum:false}}" for p in self.pre)
        return (f"{{Major:{self.major} Minor:{self.minor} Patch:{self.patch} "
                f"Pre:[{pre}] Build:[{' '.join(self.build)}]}}")


def _pre_key(pre: tuple[int | str, ...]) -> tuple:
    """Release sorts after any prerelease; numeric identifiers sort before alphanumeric ones."""
    if not pre:
        return (1,)
    return (0, tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in pre))


def compare_with_build(a: Version, b: Version) -> int:
    """opm's bundle ordering: semver, then build metadata compared like a prerelease, build > none."""
    if a != b:
        return -1 if a < b else 1
    if a.build == b.build:
        return 0
    if not a.build or not b.build:
        return 1 if a.build else -1
    ka = _pre_key(tuple(int(x) if x.isdigit() else x for x in a.build))
    kb = _pre_key(tuple(int(x) if x.isdigit() else x for x in b.build))
    return (ka > kb) - (ka < kb)
