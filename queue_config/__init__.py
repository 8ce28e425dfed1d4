"""What launchbay keeps in Redis, and the rules on it; shared by the client, the CLI, the UI and the agent.

The job flows ``enqueue -> claim -> run -> end`` through one module, ``lifecycle`` (the only writer of a
job hash), over one record type, ``job`` (the only place job states are compared). ``keys`` names
every key; ``events`` and ``logstream`` own the two message formats; ``agents`` reads agent state;
``rq_bridge`` keeps RQ's copy; ``store`` holds queues and job definitions. See docs/architecture.md.
"""
