"""Error type shared by the data layer."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data set is missing, corrupt or laid out wrongly.

    The message always names the offending file or folder and says what was expected, on a
    single line, so that a command-line tool can print it as is.
    """
