"""A job that survives preemption: it checkpoints on SIGTERM and resumes when it runs again.

Mount a folder that outlives the container (the queue's ``docker.mounts``) at /ckpt; the job's
own output folder is removed with each run. See docs/sharing.md#preemption.
"""

import json
import os
import signal
import sys
import time

CHECKPOINT = os.path.join(os.environ.get("CKPT_DIR", "/ckpt"), os.environ.get("LAUNCHBAY_JOB_ID", "job") + ".json")
state = {"step": 0}

if int(os.environ.get("LAUNCHBAY_PREEMPTED", "0")) > 0 and os.path.exists(CHECKPOINT):
    with open(CHECKPOINT) as handle:
        state = json.load(handle)
    print(f"resuming at step {state['step']} after {os.environ['LAUNCHBAY_PREEMPTED']} preemption(s)", flush=True)


def save_and_exit(signum, frame):
    with open(CHECKPOINT, "w") as handle:
        json.dump(state, handle)
    print(f"checkpoint written at step {state['step']}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, save_and_exit)
while state["step"] < 600:
    time.sleep(0.1)  # one training step
    state["step"] += 1
print("done", flush=True)
