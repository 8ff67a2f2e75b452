"""Walking a graph: steps, fan-out and fan-in, events, the unit of parallel work."""
