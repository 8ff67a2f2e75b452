"""Parallel strategies: the registry instance and the built-in executors (thread, process)."""
