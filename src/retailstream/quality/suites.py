"""Expectation suites: the declared quality contract of each silver table, as data.

A suite lives in `conf/expectations/<table>.yml`; each entry maps one to one
onto a Great Expectations 1.x expectation class:

```yaml
table: ratings
expectations:
  - type: expect_column_values_to_be_between
    kwargs: {column: stars, min_value: 1, max_value: 5}
  - type: expect_column_values_to_be_in_set
    kwargs: {column: sku}
    value_set_from: {table: products, column: sku}   # filled from reference data
  - name: ends_at_after_starts_at                       # optional; derived otherwise
    type: expect_column_pair_values_a_to_be_greater_than_b
    kwargs: {column_A: ends_at, column_B: starts_at, ignore_row_if: either_value_is_missing}
```

Only the types and kwargs that both enforcers (Spark predicates on the hot
path, `expectations.py`; Great Expectations on tables and samples,
`gx_validation.py`) implement identically are accepted: a `mostly` or a
`row_condition` would make the two disagree, so they are rejected like a typo.

Every expectation has a name, unique within its suite, that a quarantined row
carries as its reason (`stars_between_1_5`, `sku_in_products`). Without an
explicit `name:` it is derived from the type and kwargs, so it stays stable as
long as the expectation does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from retailstream.errors import ConfigError
from retailstream.schemas import CONTRACTS_BY_TABLE, silver_schema

Scalar = str | int | float | bool


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSetSource(_Frozen):
    """A reference-data column whose distinct values form an expectation's value set."""

    table: str
    column: str

    @property
    def key(self) -> str:
        """`table.column`: the key of this source in a `reference_values` mapping."""
        return f"{self.table}.{self.column}"


# One kwargs model per supported expectation type. Fields mirror the GX class's
# arguments of the same name; anything else is an error.


class NotNullKwargs(_Frozen):
    column: str


class BetweenKwargs(_Frozen):
    column: str
    min_value: int | float | None = None
    max_value: int | float | None = None
    strict_min: bool = False
    strict_max: bool = False

    @model_validator(mode="after")
    def _bounded(self) -> BetweenKwargs:
        # GX raises on these at validation time; catching them at load is kinder.
        if self.min_value is None and self.max_value is None:
            raise ValueError("needs min_value, max_value or both")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError("min_value is greater than max_value")
        return self


class InSetKwargs(_Frozen):
    column: str
    # None when the set comes from reference data (`value_set_from`).
    value_set: tuple[Scalar, ...] | None = None


# Python (GX on pandas) and Java (Spark's rlike) agree on these regex features
# for ASCII classes; `\d`, `\w`, `\s` and `\b` match different non-ASCII
# characters in the two engines, so a suite spells classes out ([0-9]).
_AMBIGUOUS_REGEX = re.compile(r"(?<!\\)(?:\\\\)*\\[dDwWsSbB]")


class MatchRegexKwargs(_Frozen):
    column: str
    regex: str

    @model_validator(mode="after")
    def _portable(self) -> MatchRegexKwargs:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        if _AMBIGUOUS_REGEX.search(self.regex):
            raise ValueError(
                f"regex {self.regex!r} uses \\d, \\w, \\s or \\b, which Python and Spark "
                "read differently; spell the class out, e.g. [0-9]"
            )
        return self


IgnoreRowIf = Literal["both_values_are_missing", "either_value_is_missing", "neither"]


class PairGreaterKwargs(_Frozen):
    column_A: str  # noqa: N815 - GX's argument name
    column_B: str  # noqa: N815
    or_equal: bool = False
    # GX's default: a row is skipped only when both values are missing.
    ignore_row_if: IgnoreRowIf = "both_values_are_missing"


Kwargs = NotNullKwargs | BetweenKwargs | InSetKwargs | MatchRegexKwargs | PairGreaterKwargs

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
MATCH_REGEX = "expect_column_values_to_match_regex"
PAIR_GREATER = "expect_column_pair_values_a_to_be_greater_than_b"

KWARGS_BY_TYPE: dict[str, type[Kwargs]] = {
    NOT_NULL: NotNullKwargs,
    BETWEEN: BetweenKwargs,
    IN_SET: InSetKwargs,
    MATCH_REGEX: MatchRegexKwargs,
    PAIR_GREATER: PairGreaterKwargs,
}

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class Expectation:
    """One declared expectation: its GX type, validated kwargs and reason name."""

    name: str
    type: str
    kwargs: Kwargs
    value_set_from: ValueSetSource | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The silver columns this expectation reads."""
        if isinstance(self.kwargs, PairGreaterKwargs):
            return (self.kwargs.column_A, self.kwargs.column_B)
        return (self.kwargs.column,)

    def gx_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the GX expectation class (value sets as lists).

        A `value_set_from` set is left out: the GX side passes it as a suite
        parameter at run time (see gx_validation.py).
        """
        kwargs = self.kwargs.model_dump(exclude_none=True)
        if "value_set" in kwargs:
            kwargs["value_set"] = list(kwargs["value_set"])
        return kwargs


@dataclass(frozen=True)
class Suite:
    """The expectations of one silver table, in file order."""

    table: str
    expectations: tuple[Expectation, ...]
    source: Path

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.expectations)

    def value_set_sources(self) -> tuple[ValueSetSource, ...]:
        """The distinct reference columns this suite's value sets come from."""
        return tuple(dict.fromkeys(e.value_set_from for e in self.expectations if e.value_set_from))

    def __getitem__(self, name: str) -> Expectation:
        for expectation in self.expectations:
            if expectation.name == name:
                return expectation
        raise KeyError(f"no expectation {name!r} in the {self.table} suite")


class _Entry(_Frozen):
    name: str | None = None
    type: str
    kwargs: dict[str, Any]
    value_set_from: ValueSetSource | None = None


class _File(_Frozen):
    table: str
    expectations: list[dict[str, Any]]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def derived_name(type_: str, kwargs: Kwargs, value_set_from: ValueSetSource | None) -> str:
    """The default, human-readable name of an expectation (its quarantine reason)."""
    if isinstance(kwargs, NotNullKwargs):
        return f"{kwargs.column}_not_null"
    if isinstance(kwargs, BetweenKwargs):
        low, high = _number(kwargs.min_value), _number(kwargs.max_value)
        if kwargs.max_value is None:
            return f"{kwargs.column}_{'above' if kwargs.strict_min else 'at_least'}_{low}"
        if kwargs.min_value is None:
            return f"{kwargs.column}_{'below' if kwargs.strict_max else 'at_most'}_{high}"
        strictly = "strictly_" if kwargs.strict_min and kwargs.strict_max else ""
        return f"{kwargs.column}_{strictly}between_{low}_{high}"
    if isinstance(kwargs, InSetKwargs):
        return f"{kwargs.column}_in_{value_set_from.table if value_set_from else 'set'}"
    if isinstance(kwargs, MatchRegexKwargs):
        return f"{kwargs.column}_format"
    comparison = "at_least" if kwargs.or_equal else "greater_than"
    return f"{kwargs.column_A}_{comparison}_{kwargs.column_B}"


def _error_text(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _parse_entry(path: Path, index: int, raw: object, columns: frozenset[str]) -> Expectation:
    where = f"{path}: expectations[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with type and kwargs")
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_error_text(exc)}") from None
    where = f"{where} ({entry.type})"
    kwargs_model = KWARGS_BY_TYPE.get(entry.type)
    if kwargs_model is None:
        raise ConfigError(
            f"{where}: unknown expectation type; supported: {', '.join(sorted(KWARGS_BY_TYPE))}"
        )
    try:
        kwargs = kwargs_model.model_validate(entry.kwargs)
    except ValidationError as exc:
        raise ConfigError(f"{where}: kwargs {_error_text(exc)}") from None
    if isinstance(kwargs, InSetKwargs):
        # Exactly one source of values: a literal set or a reference column.
        if (kwargs.value_set is None) == (entry.value_set_from is None):
            raise ConfigError(f"{where}: give either kwargs.value_set or value_set_from")
    elif entry.value_set_from is not None:
        raise ConfigError(f"{where}: value_set_from applies only to {IN_SET}")
    name = entry.name or derived_name(entry.type, kwargs, entry.value_set_from)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} may hold only letters, digits and _ . -")
    expectation = Expectation(name, entry.type, kwargs, entry.value_set_from)
    unknown = [c for c in expectation.columns if c not in columns]
    if unknown:
        raise ConfigError(f"{where}: no column {', '.join(unknown)} in the silver table")
    return expectation


def load_suite(path: Path) -> Suite:
    """Read and validate one suite file.

    Expects `<table>.yml` holding `table:` (a silver table, matching the file
    name) and `expectations:`. Raises `ConfigError` naming the file and the
    entry for an unknown type, kwarg or column, a missing value set, or a
    duplicate name.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read suite: {exc}") from None
    try:
        document = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_error_text(exc)}") from None
    if document.table not in CONTRACTS_BY_TABLE:
        raise ConfigError(
            f"{path}: unknown table {document.table!r}; silver tables: "
            f"{', '.join(sorted(CONTRACTS_BY_TABLE))}"
        )
    if document.table != path.stem:
        raise ConfigError(f"{path}: holds table {document.table!r}; name the file after it")
    columns = frozenset(silver_schema(document.table).fieldNames())
    expectations = tuple(
        _parse_entry(path, i, raw, columns) for i, raw in enumerate(document.expectations)
    )
    seen: dict[str, int] = {}
    for i, expectation in enumerate(expectations):
        if expectation.name in seen:
            raise ConfigError(
                f"{path}: expectations[{i}] has the same name {expectation.name!r} as "
                f"expectations[{seen[expectation.name]}]; give one a `name:`"
            )
        seen[expectation.name] = i
    return Suite(document.table, expectations, path)


def load_suites(suites_dir: Path) -> dict[str, Suite]:
    """Every suite in `suites_dir` (`conf/expectations`), keyed by silver table.

    Raises `ConfigError` when the folder holds no suite or a file does not validate.
    """
    paths = sorted(suites_dir.glob("*.yml"))
    if not paths:
        raise ConfigError(f"no expectation suites (*.yml) in {suites_dir}")
    return {suite.table: suite for suite in map(load_suite, paths)}
