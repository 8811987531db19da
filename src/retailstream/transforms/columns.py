"""Column helpers that keep a hot projection compiled (pure)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def _none() -> Column:
    # An empty array<string> typed as holding no null (a cast of `array()` would
    # say it might); built per call, as a Column needs an active session.
    return F.array_repeat(F.lit(""), 0)


def present(*values: Column) -> Column:
    """The non-null `values` (strings), in order, as an array<string> without nulls.

    Concatenated one-element arrays are generated code; `filter` with a lambda, and
    `array_compact`, which Spark rewrites into one, are evaluated interpreted and
    cost refine 3-4x more per row (2.5 s against 0.3-0.8 s for the parse errors of
    200k clickstream rows, 2 cores). `coalesce` makes each element non-nullable,
    so the array type says it holds no null, as `array_compact`'s does.
    """
    if not values:
        return _none()
    return F.concat(
        *(
            F.when(v.isNotNull(), F.array(F.coalesce(v, F.lit("")))).otherwise(_none())
            for v in values
        )
    )
