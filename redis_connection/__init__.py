"""Reaching Redis, in one place: URL resolution, Sentinel, error translation, and the zero-config local server.

``connect`` turns a ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://`` URL (flag, env,
file) into a client, translates Redis errors into launchbay's and waits out a failover;
``local_server`` starts the local ``redis-server`` ``launchbay`` uses when no URL is given. What is
stored in Redis and the rules on it stay in ``launchbay.queue_config``.
"""
