"""Errors a user can act on.

A `UserError` carries a one-line message that says what went wrong and what to
do; the CLI prints it without a stack trace (unless `--verbose`).
"""


class UserError(Exception):
    """A known failure with a message that names the fix."""


class ConfigError(UserError):
    """Configuration that does not validate (unknown key, wrong type, bad file)."""
