"""Stand-in for TensorFlow v1's ``tf.app.flags`` (see ../README.md)."""

from types import SimpleNamespace

import _flagvalues

app = SimpleNamespace(flags=_flagvalues)
