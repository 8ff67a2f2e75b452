"""The dask strategy: branches run on an existing Dask cluster (the `tead[dask]` extra).

executor.py  the client side (in the run's process): connect, ship, supervise, stop
worker.py    what runs in a dask worker: the branch in a child process group it watches
child.py     that child: loads the workflow from its bundle, runs the branch
"""
