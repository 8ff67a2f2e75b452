"""tools/tea_examples.py tells TEA-only workflows from shared-format ones."""

from __future__ import annotations

from pathlib import Path

import yaml

from tools.tea_examples import tea_only

CORPUS = Path(__file__).resolve().parent / "data" / "tea"


def test_corpus_files_are_shared_format_except_the_unsupported_one():
    found = {
        path.name: tea_only(yaml.safe_load(path.read_text(encoding="utf-8")))
        for path in CORPUS.glob("*.yaml")
    }
    assert found.pop("unsupported.yaml") is True
    assert found and not any(found.values())


def test_actions_languages_and_services_are_tea_only():
    node = {"name": "a"}
    assert not tea_only({"nodes": [node]})
    assert not tea_only({"nodes": [{**node, "uses": "mod:fn"}]})
    assert tea_only({"nodes": [{**node, "uses": "llm.call"}]})
    assert tea_only({"nodes": [{**node, "action": "http.get"}]})
    assert tea_only({"nodes": [{**node, "language": "lua"}]})
    assert tea_only({"nodes": [{**node, "steps": [{"uses": "llm.call"}]}]})
    assert tea_only({"nodes": [node], "variables": {}})
    assert tea_only({"nodes": [node], "settings": {"llm": {}}})
    assert not tea_only({"nodes": [node], "settings": {"parallel": {"strategy": "process"}}})
