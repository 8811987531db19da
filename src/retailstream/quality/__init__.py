"""Quality: the declared expectation suites of the silver tables and their two enforcers.

- `suites`: `conf/expectations/<table>.yml` -> validated, frozen `Suite` objects.
- `expectations`: the streaming hot path; a suite as row-level Spark predicates
  (`failed_expectations`), and the `unknown_line_skus` lookup they need.
- `gx_validation`: the same suites through Great Expectations on tables and
  samples, with validation results and Data Docs (imports GX: slow, import on demand).
"""
