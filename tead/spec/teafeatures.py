"""The Edge Agent's (TEA's) features that tead does not provide, each with what to use
instead (the messages of tead.spec.tea)."""

from __future__ import annotations

#: top-level keys of TEA that tead does not provide → what to use instead
TOP_FEATURES: dict[str, str] = {
    "imports": "TEA's action imports; call your function with uses: module:function",
    "variables": "TEA's template variables; put the values in initial_state",
    "secrets": "TEA's secrets; use env: with {secret: name} (the daemon's secrets)",
    "data": "TEA's template data; put the values in initial_state",
    "extraction_schema": "a TEA extraction feature; validate in a run: node",
    "validation_constraints": "a TEA extraction feature; validate in a run: node",
    "semantic_probes": "a TEA extraction feature; validate in a run: node",
    "validation_logging": "a TEA extraction feature; log from a run: node",
    "output_schema": "TEA's output shaping; shape the state in a last run: node",
    "input_schema": "TEA's input check; use state_schema or on.dispatch.inputs",
    "endpoint": "TEA's HTTP endpoint; dispatch runs through tead's HTTP API",
    "checkpoint": "TEA's checkpoints; the daemon keeps run history (tead runs rerun)",
    "interrupt_before": "TEA's human-in-the-loop interrupts; split the workflow in two",
    "interrupt_after": "TEA's human-in-the-loop interrupts; split the workflow in two",
    "observability": "TEA's observability; use tead's events (--stream) and metrics",
}
#: node keys of TEA that tead does not provide
NODE_FEATURES: dict[str, str] = {
    "goto": "TEA's goto: navigation; write edges (from, to, when)",
    "next": "TEA's next: navigation; write edges (from, to, when)",
    "interrupt": "TEA's human-in-the-loop interrupts; split the workflow in two",
    "interrupt_before": "TEA's human-in-the-loop interrupts; split the workflow in two",
    "interrupt_after": "TEA's human-in-the-loop interrupts; split the workflow in two",
    "script": "TEA's script: code; write run: (Python)",
    "steps": "TEA's steps: on a plain node; write one run: node per step",
    "strategy": "TEA's matrix strategy; use an edge with parallel: true and for_each:",
    "parallel_each": "TEA's parallel_each; use an edge with parallel: true and for_each:",
    "on_error": "TEA's on_error handlers; use settings.parallel.retry or try/except in run:",
    "streams": "TEA's stream channels; pass data through the state",
    "body": "TEA's while_loop body; use a conditional edge back to an earlier node",
    "max_iterations": "TEA's while_loop; use a conditional edge back to an earlier node",
    "action": "TEA's dynamic_parallel action mode; write steps: with Python run: code",
    "subgraph": "TEA's dynamic_parallel subgraph mode; write steps: with Python run: code",
    "input": "TEA's subgraph input mapping; write steps: with Python run: code",
    "params": "TEA's action params; call your function with uses: module:function",
    "outputs": "TEA's action outputs; return a dict from run:",
    "prompt": "TEA's LLM prompt; call your own function with uses: module:function",
    "paths": "TEA's condition routing; write conditional edges (when:)",
    "edges": "TEA's switch edges; write conditional edges (when:)",
    "config": "TEA's action settings; call your own function with uses: module:function",
}
EDGE_FEATURES: dict[str, str] = {
    "stream_mode": "TEA's stream channels; pass data through the state",
}
#: `config:` keys tead ignores (a warning); interrupts are refused
CONFIG_IGNORED: dict[str, str] = {
    "checkpoint_dir": "tead keeps no checkpoints; the daemon keeps run history",
    "checkpoint": "tead keeps no checkpoints; the daemon keeps run history",
    "max_execution_time": "use the top-level timeout: (enforced by the daemon)",
}
INTERRUPTS = ("interrupt_before", "interrupt_after")
ACTION_PARTS = ("with", "output", "inputs", "config", "edges", "paths", "params")
