"""launchbay: launch-time job inputs, Redis queues and GPU-aware Docker agents.

This folder holds only what every package shares: ``errors`` (the exception tree) and ``text``
(``as_text``, the one bytes-to-str helper). The subpackages live in top-level folders, mapped
under this namespace by ``pyproject.toml`` (``[tool.setuptools.package-dir]``)::

    sdk/           -> launchbay.sdk            in the job's container; imports nothing of ours
    queue_config/  -> launchbay.queue_config   what is stored in Redis: job record (job), its
                                               transitions (lifecycle), keys, events, log stream
    client/        -> launchbay.client         the Python API (enqueue, job handles)
    cli/           -> launchbay.cli            the ``launchbay`` command
    ui/            -> launchbay.ui             the web pages
    agent/         -> launchbay.agent          the per-host daemon

docs/architecture.md is the map of which module owns what. Keep this module free of imports: the
SDK must import in a bare job image that has only PyYAML.
"""

__version__ = "0.1.0"
