"""A job's metric stream, in one place: the steps a job logs (metrics.jsonl), carried to Redis and read back.

``job_file`` reads the job's metrics.jsonl and summary.json as untrusted input; ``follower`` copies
new lines into the job's capped Redis stream while it runs (the agent); ``entries`` is the stream's
entry format, written and read only through it; ``reader`` follows the stream for ``launchbay metrics``,
the job page and a sweep's driver. Prometheus exposition is not here: ``launchbay.prometheus``.
"""
