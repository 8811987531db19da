"""Great Expectations validation of silver tables and samples, with Data Docs.

The suites of `conf/expectations` run through GX 1.x on pandas frames (GX's
Spark datasource needs an extra that caps pyspark below the version we use):
a silver table, or a sample of it, is read with Spark and converted with
`toPandas()`. Results and Data Docs land in a file data context under
`<output_dir>/gx/` (results in `uncommitted/validations/`, the site in
`uncommitted/data_docs/local_site/`), so every run adds to a browsable history.

Value sets declared with `value_set_from` are suite parameters in the stored
suite (`{"$PARAMETER": "products__sku"}`), bound at run time to the
reference values that occur in the frame: the verdict per row is the same as
with the whole reference column, while the stored result and its Data Docs page
stay proportional to the data (GX re-serialises an expectation's kwargs many
times per run, so a 100k-value set costs it about ten seconds).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlparse

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from retailstream.errors import UserError
from retailstream.io.datasets import SILVER
from retailstream.io.delta import has_commits, read_table
from retailstream.quality.expectations import ROW_KEY
from retailstream.quality.suites import (
    BETWEEN,
    IN_SET,
    MATCH_REGEX,
    NOT_NULL,
    PAIR_GREATER,
    Suite,
    ValueSetSource,
)

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.datasource.fluent import PandasDatasource

DATASOURCE = "retailstream"
BATCH_DEFINITION = "whole_frame"
DOCS_SITE = "local_site"
DEFAULT_MAX_ROWS = 100_000


def _great_expectations() -> ModuleType:
    """Import GX (a few seconds, so only when validating).

    GX imports `pyspark.sql.connect`, which calls `sys.exit(0)` when grpc is
    absent and `__main__` looks like a doctest run (`python -c`, stdin): the
    process would end silently. Marking the interpreter interactive for the
    import skips that check; GX then sees Spark Connect as unavailable, as it is.
    """
    main = sys.modules.get("__main__")
    looks_like_doctest = (
        main is not None
        and getattr(main, "__spec__", None) is None
        and not hasattr(main, "__file__")
        and not hasattr(sys, "ps1")
    )
    if looks_like_doctest:
        sys.ps1 = ">>> "
    try:
        import great_expectations as gx
    finally:
        if looks_like_doctest:
            del sys.ps1
    return gx


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation fared on a frame."""

    name: str
    type: str
    success: bool
    unexpected_count: int
    # Index labels of the failing rows in the validated frame.
    unexpected_rows: tuple[Hashable, ...]
    # GX's message when evaluating the expectation raised (a wrong column type...).
    error: str | None = None


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of one suite on one frame, and where GX wrote it."""

    table: str
    success: bool
    rows: int
    outcomes: tuple[ExpectationOutcome, ...]
    result_path: Path | None
    data_docs_path: Path | None
    # Rows in the table when `rows` is a sample of it.
    table_rows: int | None = None

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def unexpected_rows(self) -> dict[str, frozenset[Hashable]]:
        """Expectation name -> index labels of the rows that fail it."""
        return {o.name: frozenset(o.unexpected_rows) for o in self.outcomes}

    @staticmethod
    def _failing_rows(outcome: ExpectationOutcome) -> str:
        examples = ", ".join(str(r) for r in outcome.unexpected_rows[:3])
        return f"{outcome.unexpected_count:,} rows" + (f" (e.g. {examples})" if examples else "")

    def lines(self) -> list[str]:
        """A short human-readable report, one line per failing expectation."""
        sampled = f" (a sample of {self.table_rows:,})" if self.table_rows else ""
        verdict = "passed" if self.success else f"{len(self.failed)} failed"
        head = f"{self.table}: {len(self.outcomes)} expectations, {verdict}, on {self.rows:,} rows{sampled}"
        body = [f"  {o.name}: {o.error or self._failing_rows(o)}" for o in self.failed]
        if self.result_path:
            body.append(f"  result: {self.result_path}")
        return [head, *body]


@dataclass(frozen=True)
class QualityReport:
    """What `retailstream quality validate` found across the silver tables."""

    summaries: tuple[ValidationSummary, ...]
    # Suites whose silver table does not exist (yet) in the lake.
    skipped: tuple[str, ...]
    data_docs_index: Path | None

    @property
    def success(self) -> bool:
        return all(s.success for s in self.summaries)

    def lines(self) -> list[str]:
        lines = [line for s in self.summaries for line in s.lines()]
        lines += [f"{table}: no silver table, skipped" for table in self.skipped]
        if self.data_docs_index:
            lines.append(f"Data Docs: {self.data_docs_index}")
        return lines


def open_context(output_dir: Path) -> AbstractDataContext:
    """The file data context in `<output_dir>/gx` (created on first use).

    Creating one is quick; importing GX, which this does, takes seconds: make
    one context per process and pass it to `validate_frame`.
    """
    gx = _great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    output_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(output_dir))
    # GX draws a tqdm bar per expectation on stderr; the CLI prints its own summary.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def gx_expectation_classes() -> dict[str, type]:
    """The GX class of each expectation type a suite may use."""
    gxe = _great_expectations().expectations
    return {
        NOT_NULL: gxe.ExpectColumnValuesToNotBeNull,
        BETWEEN: gxe.ExpectColumnValuesToBeBetween,
        IN_SET: gxe.ExpectColumnValuesToBeInSet,
        MATCH_REGEX: gxe.ExpectColumnValuesToMatchRegex,
        PAIR_GREATER: gxe.ExpectColumnPairValuesAToBeGreaterThanB,
    }


def parameter_name(source: ValueSetSource) -> str:
    """The suite parameter a reference value set is bound to (GX rejects dots)."""
    return f"{source.table}__{source.column}"


def gx_suite(suite: Suite) -> ExpectationSuite:
    """`suite` as a GX ExpectationSuite named after its table; each expectation
    carries its name in `meta["name"]` and a reference value set as a parameter."""
    gx = _great_expectations()
    classes = gx_expectation_classes()
    expectations = []
    for e in suite.expectations:
        kwargs = e.gx_kwargs()
        meta: dict[str, Any] = {"name": e.name}
        if e.value_set_from is not None:
            kwargs["value_set"] = {"$PARAMETER": parameter_name(e.value_set_from)}
            meta["value_set_from"] = e.value_set_from.key
        expectations.append(classes[e.type](**kwargs, meta=meta))
    return gx.ExpectationSuite(name=suite.table, expectations=expectations)


def _suite_parameters(
    frame: pd.DataFrame, suite: Suite, reference: Mapping[str, Sequence[Any]]
) -> dict[str, list[Any]]:
    """Each reference value set, cut down to the values the frame holds.

    Same verdict per row as the whole set (a value is in the set iff it is in
    the part that occurs), at a fraction of GX's cost on large sets.
    """
    present: dict[ValueSetSource, set[Any]] = {}
    for e in suite.expectations:
        if e.value_set_from is not None:
            seen = present.setdefault(e.value_set_from, set())
            seen.update(frame[e.columns[0]].dropna().tolist())
    parameters = {}
    for source, seen in present.items():
        if source.key not in reference:
            raise UserError(f"the {suite.table} suite needs reference values {source.key}")
        parameters[parameter_name(source)] = sorted(
            {v for v in reference[source.key] if v in seen}, key=str
        )
    return parameters


def _validation_objects(context: AbstractDataContext, suite: Suite) -> Checkpoint:
    """The checkpoint validating a dataframe against `suite`, saved in the context
    (idempotent: re-running updates the suite and reuses the rest)."""
    gx = _great_expectations()
    try:
        datasource = cast("PandasDatasource", context.data_sources.get(DATASOURCE))
    except KeyError:
        datasource = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = datasource.get_asset(suite.table)
    except LookupError:
        asset = datasource.add_dataframe_asset(suite.table)
    try:
        batch = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    stored_suite = context.suites.add_or_update(gx_suite(suite))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.table, data=batch, suite=stored_suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.table,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE"},
        )
    )


def _file_path(url: str | None) -> Path | None:
    return Path(unquote(urlparse(url).path)) if url else None


def validate_frame(
    frame: pd.DataFrame,
    suite: Suite,
    reference_values: Mapping[str, Sequence[Any]],
    output_dir: Path,
    *,
    context: AbstractDataContext | None = None,
    table_rows: int | None = None,
) -> ValidationSummary:
    """Run `suite` through GX on `frame` and summarise it per expectation.

    Expects a pandas frame with the suite's columns (a silver table or sample
    via `toPandas()`) and `reference_values` keyed by `table.column` for each
    `value_set_from` (see `reference_values`). Writes the validation result
    JSON and updates the Data Docs in the context under `output_dir` (opened
    here unless `context` is given). The unexpected rows are `frame`'s index
    labels. `table_rows` records the table's size when `frame` is a sample.
    """
    context = context or open_context(output_dir)
    parameters = _suite_parameters(frame, suite, reference_values)
    checkpoint = _validation_objects(context, suite)
    result = checkpoint.run(
        batch_parameters={"dataframe": frame}, expectation_parameters=parameters
    )
    (identifier, validation), *_ = result.run_results.items()
    outcomes = []
    for r in validation.results:
        exception = r.exception_info or {}
        assert r.expectation_config is not None, "a result names the expectation it checked"
        raised = exception.get("raised_exception", False)
        outcomes.append(
            ExpectationOutcome(
                name=r.expectation_config.meta["name"],
                type=r.expectation_config.type,
                success=bool(r.success),
                unexpected_count=int(r.result.get("unexpected_count") or 0),
                unexpected_rows=tuple(r.result.get("unexpected_index_list") or ()),
                error=exception.get("exception_message") if raised else None,
            )
        )
    store = context.validation_results_store.store_backend
    docs = context.get_docs_sites_urls(resource_identifier=identifier, site_name=DOCS_SITE)
    return ValidationSummary(
        table=suite.table,
        success=bool(validation.success),
        rows=len(frame),
        outcomes=tuple(outcomes),
        result_path=_file_path(store.get_url_for_key(identifier.to_tuple())),
        data_docs_path=_file_path(docs[0]["site_url"] if docs else None),
        table_rows=table_rows,
    )


def silver_sample(
    table: DataFrame, columns: Sequence[str], max_rows: int, seed: int = 0
) -> tuple[DataFrame, int]:
    """At most `max_rows` rows of `table` (a uniform sample when it is larger),
    with only `columns`, and the table's row count."""
    total = table.count()
    selected = table.select(*columns)
    if total <= max_rows:
        return selected, total
    # A little over the fraction, then a cut: Bernoulli sampling varies in size.
    fraction = min(1.0, 1.1 * max_rows / total)
    return selected.sample(fraction=fraction, seed=seed).limit(max_rows), total


def validate_tables(
    spark: SparkSession,
    lake_root: Path,
    suites: Mapping[str, Suite],
    reference_values: Mapping[str, Sequence[Any]],
    output_dir: Path,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QualityReport:
    """Validate each silver Delta table `<lake_root>/silver/<table>` with its suite.

    Tables larger than `max_rows` are sampled. Failing rows are named by their
    bronze address `topic/partition/offset`. Tables that do not exist are
    reported as skipped. Returns the per-table summaries and the Data Docs
    index under `output_dir` (see `QualityReport.lines` for printing).
    """
    context: AbstractDataContext | None = None
    summaries = []
    skipped = []
    for table, suite in sorted(suites.items()):
        path = lake_root / SILVER / table
        if not has_commits(path):
            skipped.append(table)
            continue
        columns = list(
            dict.fromkeys([*ROW_KEY, *(c for e in suite.expectations for c in e.columns)])
        )
        sample, total = silver_sample(read_table(spark, path), columns, max_rows)
        frame = sample.toPandas()
        # Failing rows are then reported by their bronze address, not a sample position.
        frame.index = pd.Index(
            [f"{t}/{p}/{o}" for t, p, o in zip(*(frame[c] for c in ROW_KEY), strict=True)]
        )
        context = context or open_context(output_dir)
        summaries.append(
            validate_frame(
                frame,
                suite,
                reference_values,
                output_dir,
                context=context,
                table_rows=total if total > len(frame) else None,
            )
        )
    index = None
    if context is not None:
        urls = context.get_docs_sites_urls(site_name=DOCS_SITE)
        index = _file_path(urls[0]["site_url"] if urls else None)
    return QualityReport(tuple(summaries), tuple(skipped), index)
