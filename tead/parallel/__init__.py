"""The failure policy of a fan-out: config values, results, breakers, callbacks, cancel, and
the supervisor with its seams (launcher.py, outcomes.py, clock.py, hooks.py, task.py)."""
