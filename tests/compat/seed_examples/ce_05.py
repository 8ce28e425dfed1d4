run.config.update({"lr": 0.1, "channels": 16})
