"""Building and checking a workflow graph: nodes, the builder, the compiled graph, the loader."""
