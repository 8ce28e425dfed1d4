"""launchbay: launch-time job inputs, Redis queues and GPU-aware Docker agents.

The subpackages live in top-level folders (``sdk/``, ``queue_config/``, ``client/``, ``cli/``,
``agent/``) and are mapped under this namespace by ``pyproject.toml``. Keep this module free of
imports: the SDK must import in a bare job image that has only PyYAML.
"""

__version__ = "0.1.0"
