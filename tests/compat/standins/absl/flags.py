"""Stand-in for ``absl.flags``: ``DEFINE_*`` and ``FLAGS``."""

from _flagvalues import FLAGS, DEFINE_boolean, DEFINE_float, DEFINE_integer, DEFINE_string

__all__ = ["FLAGS", "DEFINE_boolean", "DEFINE_float", "DEFINE_integer", "DEFINE_string"]
