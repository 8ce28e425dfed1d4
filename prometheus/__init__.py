"""Prometheus exposition, in one place: the agent's ``/metrics`` and the queue-level exporter's collector.

``agent`` is served by each agent on ``--metrics-port``; ``fleet`` by ``launchbay exporter`` and the
UI's ``/metrics``. Both compute at scrape time from what is in Redis and write nothing
(docs/metrics.md lists every metric). A job's own logged steps are not here: ``launchbay.metric_stream``.
"""
