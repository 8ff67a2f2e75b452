"""The remote strategy: branches on SSH hosts through one warm worker per host (executor.py,
launcher.py: the client side; hosts.py: one host's link; worker.py: what runs on the host;
protocol.py: what they say to each other)."""
