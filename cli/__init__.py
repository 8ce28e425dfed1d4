"""The ``launchbay`` command (click): thin over ``launchbay.client`` and ``launchbay.queue_config``."""
