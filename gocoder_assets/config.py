"""One default per setting: a Dagster config class mirrors a Dagster-free dataclass, field by field.

The dataclass holds each default and is what the stage's code takes; the ``dg.Config`` takes its defaults
from it (``field: int = Options.field``) and turns itself back into one with ``with_config``.
"""

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def with_config(defaults: T, values: dict[str, Any]) -> T:
    """``defaults`` (a dataclass instance) with the config's values for its own fields; Dagster config has
    lists where the dataclasses keep tuples, so lists become tuples again."""
    names = {f.name for f in dataclasses.fields(defaults)}  # type: ignore[arg-type]
    mine = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return dataclasses.replace(defaults, **mine)  # type: ignore[type-var]
