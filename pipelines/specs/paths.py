"""One confinement for every path a job touches.

Every path-typed spec field carries a `LocalPath` marker in its type (`PathText` does), and
`spec_paths` finds them by walking the model's fields, nested sections, lists and pipeline
sub-specs included: a path field added later is covered without touching a list. `confine`
resolves each one as the job would open it (`~`, symlinks via realpath, `..`, every match of a
glob, `{split}` for every split) and holds it to the data roots; URLs pass only under a
prefix the settings allow (none by default). The service runs it on submission and the job
entry again on its own node, before use; `check_inside` holds paths read from data (shards
named in a manifest, the encoder a result.json names) to the same roots.

Imports neither torch nor Ray, so the service can use it.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from pipelines.specs.errors import SelfieError

SPLITS = ("train", "val", "test")
_GLOB_CHARS = re.compile(r"[*?\[]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class PathOutsideRoots(SelfieError):
    """A path a job would read or write lies outside the roots the service allows."""


@dataclass(frozen=True)
class LocalPath:
    """Type marker: this string field names a file or folder on the job's node.

    `locate` maps the field's text to its file-system part (None: the value names no file,
    as `synthetic:100` does); `pattern` lets the text hold glob wildcards and `{split}`;
    `url` lets it be a URL, still only under an allowed prefix."""

    locate: Callable[[str], str | None] | None = None
    pattern: bool = False
    url: bool = False


@dataclass(frozen=True)
class FoundPath:
    field: str  # dotted location in the spec, e.g. "pretrained.0.path"
    value: str  # the field's file-system part
    marker: LocalPath


@dataclass(frozen=True)
class Confinement:
    """Where a job's paths may lie: resolved root folders, and URL prefixes allowed."""

    roots: tuple[str, ...]
    url_prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, roots: list, url_prefixes: list[str] | tuple[str, ...] = ()) -> Confinement:
        resolved = tuple(os.path.realpath(os.path.expanduser(os.fspath(r))) for r in roots)
        return cls(resolved, tuple(url_prefixes))

    def describe(self) -> str:
        return ", ".join(self.roots)


def _markers(annotation: Any) -> list[LocalPath]:
    """Every LocalPath in a type, looking inside Annotated, Optional, unions and lists."""
    found: list[LocalPath] = []
    if get_origin(annotation) is Annotated:
        found += [m for m in annotation.__metadata__ if isinstance(m, LocalPath)]
        return _markers(get_args(annotation)[0]) + found
    if get_origin(annotation) in (Union, list, tuple) or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found += _markers(arg)
    return found


def _field_marker(model: type[BaseModel], name: str) -> LocalPath | None:
    info = model.model_fields[name]
    markers = [m for m in info.metadata if isinstance(m, LocalPath)] + _markers(info.annotation)
    return markers[-1] if markers else None


def _walk(value: Any, where: str, marker: LocalPath | None) -> Iterator[FoundPath]:
    if isinstance(value, BaseModel):
        yield from spec_paths(value, prefix=f"{where}.")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from _walk(item, f"{where}.{k}", marker)
    elif isinstance(value, str) and marker is not None:
        located = marker.locate(value) if marker.locate else value
        if located is not None:
            yield FoundPath(where, located, marker)


def spec_paths(spec: BaseModel, prefix: str = "") -> Iterator[FoundPath]:
    """Every path a spec names, found from the types of its fields."""
    for name in type(spec).model_fields:
        yield from _walk(getattr(spec, name), f"{prefix}{name}", _field_marker(type(spec), name))


def _inside(resolved: str, confinement: Confinement) -> bool:
    return any(resolved == r or resolved.startswith(r.rstrip("/") + "/") for r in confinement.roots)


def _outside(field: str, value: str, confinement: Confinement, why: str = "") -> PathOutsideRoots:
    return PathOutsideRoots(
        f"{field}: {value!r} {why or 'lies outside the allowed data roots'} "
        f"({confinement.describe()}); move the data under a root or ask the operator to add "
        "one to SELFIE_DATA_ROOTS"
    )


def check_inside(path: str, what: str, confinement: Confinement | None) -> str:
    """`path` resolved (symlinks, `..`); refused unless inside the roots. None: unconfined
    (a user's own terminal), the path is only resolved."""
    resolved = os.path.realpath(os.path.expanduser(path))
    if confinement is not None and not _inside(resolved, confinement):
        raise _outside(what, path, confinement)
    return resolved


def _check_url(found: FoundPath, confinement: Confinement) -> None:
    value = found.value
    allowed = found.marker.url and any(value.startswith(p) for p in confinement.url_prefixes)
    # A query or fragment can redirect a URL (`?endpoint_override=`); `..` can climb out.
    if not allowed or any(bad in value for bad in ("?", "#", "..", "\\")):
        raise PathOutsideRoots(
            f"{found.field}: the URL {value!r} is not under an allowed prefix "
            f"({', '.join(confinement.url_prefixes) or 'none are allowed'}); give a path under "
            "the data roots, or ask the operator to list the prefix in "
            "SELFIE_ALLOWED_URL_PREFIXES"
        )


def _check_pattern(found: FoundPath, confinement: Confinement) -> None:
    """A glob: its fixed folder must lie inside, no `..` may follow a wildcard, and every
    file it matches (for every split) must resolve inside."""
    patterns = [found.value]  # a reader that does not expand `{split}` opens it as it is
    if "{split}" in found.value:
        patterns += [found.value.replace("{split}", s) for s in SPLITS]
    for pattern in patterns:
        parts = os.path.expanduser(pattern).split("/")
        wild = next((i for i, p in enumerate(parts) if _GLOB_CHARS.search(p)), len(parts))
        if ".." in parts[wild:]:
            why = "climbs with '..' after a wildcard"
            raise _outside(found.field, found.value, confinement, why)
        fixed = "/".join(parts[:wild]) or ("/" if pattern.startswith("/") else ".")
        check_inside(fixed, found.field, confinement)
        for match in glob.glob(os.path.expanduser(pattern)):
            check_inside(match, f"{found.field} (match {match!r})", confinement)


def confine(spec: BaseModel, confinement: Confinement) -> None:
    """Refuse the spec, in one sentence, if any path it names would leave the roots."""
    for found in spec_paths(spec):
        if _URL.match(found.value):
            _check_url(found, confinement)
        elif found.marker.pattern and ("{split}" in found.value or _GLOB_CHARS.search(found.value)):
            _check_pattern(found, confinement)
        else:
            check_inside(found.value, found.field, confinement)
