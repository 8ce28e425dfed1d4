from launchbay.queue_config.keys import Keys


def test_key_shapes_are_pinned():
    k = Keys()
    assert k.queues == "launchbay:queues"
    assert k.queue("gpu") == "launchbay:queue:gpu"
    assert k.jobdefs == "launchbay:jobdefs"
    assert k.jobdef("trainer") == "launchbay:jobdef:trainer"
    assert k.job("abc") == "launchbay:job:abc"
    assert k.job_log("abc") == "launchbay:job:abc:log"
    assert k.job_log_rank("abc", 0) == "launchbay:job:abc:log"
    assert k.job_log_rank("abc", 2) == "launchbay:job:abc:log:2"
    assert k.gang("abc") == "launchbay:gang:abc"
    assert k.gang_assembling("gpu") == "launchbay:gang:assembling:gpu"
    assert k.job_metrics("abc") == "launchbay:job:abc:metrics"
    assert k.queue_jobs("gpu") == "launchbay:jobs:gpu"
    assert k.agents == "launchbay:agents"
    assert k.agent("h1") == "launchbay:agent:h1"
    assert k.agent_alive("h1") == "launchbay:agent:h1:alive"
    assert k.agent_ledger("h1") == "launchbay:agent:h1:ledger"
    assert k.agent_capacity("h1") == "launchbay:agent:h1:capacity"
    assert k.agent_drained_gpus("h1") == "launchbay:agent:h1:drained_gpus"
    assert k.events == "launchbay:events"
    assert k.agent_events("h1") == "launchbay:events:h1"
    assert k.idle("gpu") == "launchbay:idle:gpu"
    assert k.reaper_lock == "launchbay:reaper:lock"
    assert k.fleet == "launchbay:fleet"
    assert k.pending_lease("gpu") == "launchbay:lease:pending:gpu"
    assert k.usage("gpu") == "launchbay:usage:gpu"
    assert k.user_usage("gpu", "alice") == "launchbay:quota_usage:gpu:alice"
    assert k.replication_probe == "launchbay:replication-probe"
    assert k.sweeps == "launchbay:sweeps"
    assert k.sweeps_active == "launchbay:sweeps:active"
    assert k.sweep("s1") == "launchbay:sweep:s1"
    assert k.sweep_lease("s1") == "launchbay:sweep:s1:lease"
    assert k.sweep_journal("s1") == "launchbay:study:s1"
    assert k.sweeps_new == "launchbay:sweeps:new"


def test_namespace_is_configurable():
    assert Keys("team-a").job("x") == "team-a:job:x"
