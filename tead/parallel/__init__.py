"""The failure policy of a fan-out: config values, results, breakers, callbacks, cancel and
the supervisor."""
