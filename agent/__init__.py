"""The per-host daemon: inventory -> placement -> claim -> runtime -> report.

``daemon`` runs the loop; ``claim`` takes jobs through ``queue_config.lifecycle``; ``supervisor``
gives each job a thread (``job_run``: launch, watch, classify; ``job_end``: record the end through
``lifecycle.end``); ``reaper`` and ``reconcile`` settle jobs whose agent or container was lost.
See docs/architecture.md and docs/runtime.md.
"""
