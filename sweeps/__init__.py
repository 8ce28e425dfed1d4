"""Sweeps, in one place: the SWEEP.yaml format, a sweep's record and lease, its Optuna study, the driver.

``spec`` reads SWEEP.yaml (W&B's sweep format); ``store`` owns the sweep hash, its state changes and
the driver lease; ``study`` keeps the Optuna study on a Redis list (Optuna is imported there only);
``driver`` is the agent's ``sweeps`` thread. The client's checks (``client/sweeps.py``), the command
line (``cli/sweep_cmds.py``) and the UI's pages (``ui/sweep_view.py``) call into it.
"""
