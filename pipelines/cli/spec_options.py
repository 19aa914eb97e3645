"""Command-line options generated from the spec models, so a spec field is a flag, a REST
field and a YAML key at once.

Every leaf field of a spec becomes one option named by its path: `--batch-size`, nested
sections with a dot (`--optim.lr`, `--sweep.search.lr`). Help comes from the field's
description. Values are handed to pydantic as text (lists comma-separated, `none` for an
optional field), so parsing and its error messages are the spec's own.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipelines.specs import SpecError, load_spec_file

NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class SpecOption:
    """One leaf field of a spec and the option that sets it."""

    path: tuple[str, ...]
    field: FieldInfo
    is_list: bool
    optional: bool
    option: click.Option

    @property
    def param_name(self) -> str:
        return "__".join(self.path)

    def value(self, raw: Any) -> Any:
        """The option's text as the spec's input: a list, None, or the text itself."""
        if isinstance(raw, bool):
            return raw
        if self.optional and raw.strip().lower() in NONE_WORDS:
            return None
        if self.is_list:
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw


def _without_none(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # noqa: UP007
    return annotation, False


def _section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _metavar(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (str,)
        return f"{_metavar(item)},..."
    names = {int: "INT", float: "NUMBER", str: "TEXT"}
    return names.get(annotation, "TEXT")


def _default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else ""
    default = field.default
    if default is None:
        return ""
    if isinstance(default, list):
        default = ",".join(str(v) for v in default)
    return f"default: {default}"


def _is_constant(name: str, field: FieldInfo) -> bool:
    """The `kind` discriminator: one allowed value, nothing for a user to set."""
    args = typing.get_args(field.annotation)
    return name == "kind" and typing.get_origin(field.annotation) is Literal and len(args) == 1


def spec_options(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[SpecOption]:
    """One option per leaf field of `model`, depth first, in field order."""
    for name, field in model.model_fields.items():
        if _is_constant(name, field):
            continue
        annotation, optional = _without_none(field.annotation)
        path = (*prefix, name)
        section = _section(annotation)
        if section is not None:
            yield from spec_options(section, path)
            continue
        flag = "--" + ".".join(p.replace("_", "-") for p in path)
        extra = _default_text(field)
        help_text = " ".join(
            part for part in (field.description or "", f"[{extra}]" if extra else "") if part
        )
        param = "__".join(path)
        if annotation is bool:
            *head, last = path
            negative = "--" + ".".join([*head, "no-" + last]).replace("_", "-")
            option = click.Option(
                [f"{flag}/{negative}", param], default=None, help=help_text, show_default=False
            )
        else:
            option = click.Option(
                [flag, param], type=str, default=None, metavar=_metavar(annotation), help=help_text
            )
        is_list = typing.get_origin(annotation) is list
        yield SpecOption(path, field, is_list, optional, option)


def _deep_set(data: dict, path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    for key in parents:
        node = data.get(key)
        if not isinstance(node, dict):
            node = data[key] = {}
        data = node
    data[last] = value


def spec_data(options: list[SpecOption], values: dict[str, Any], config: Path | None) -> dict:
    """The spec's input: the config file's fields, overridden by the options given."""
    data = load_spec_file(config) if config else {}
    for opt in options:
        raw = values.get(opt.param_name)
        if raw is not None:
            _deep_set(data, opt.path, opt.value(raw))
    return data


CONFIG_OPTION = click.Option(
    ["--config", "config"],
    type=click.Path(path_type=Path),
    default=None,
    help="A spec as YAML or JSON; options given on the command line override its fields.",
)


def check_known_kind(data: dict, kind: str) -> None:
    found = data.get("kind", kind)
    if found != kind:
        raise SpecError(f"the config file holds a {found!r} spec, not {kind!r}")
