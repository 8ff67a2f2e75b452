"""The workflow file format: YAML with positions, pydantic models, cron, globs, schedules."""
