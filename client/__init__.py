"""The Python API: enqueue jobs and follow them.

    from launchbay.client import enqueue

    job = enqueue("job.yaml", "gpu", overrides={"trainer": {"learning_rate": 0.1}}, resources={"gpus": "A100:2"})
    for line in job.logs(follow=True):
        print(line)
    print(job.wait()["state"])

The ``launchbay`` command is a thin layer over these functions, so both validate the same way.
"""

from .enqueue import adhoc_spec, enqueue, load_spec, with_changes
from .handle import JobHandle
from .jobs import get_job, list_jobs

__all__ = ["JobHandle", "adhoc_spec", "enqueue", "get_job", "list_jobs", "load_spec", "with_changes"]
