"""The command line: parse, call, and map errors to one line and an exit code."""
