"""`tead serve`: watcher, registry, scheduler, run queue, store, HTTP API, metrics, and the
composition root that wires them."""
