"""The README's pictures of the web page, taken from the real thing: a real `tead serve`
on a temporary folder runs a few workflows, and headless chromium (Debian's, driven by
playwright) photographs each page.

    python tools/screenshots.py [OUT_DIR]     (default: docs/webui, next to this folder)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import chromium, new_page
from tests.daemon_fixture import ROOT, DaemonProcess, free_port

REPORT = """\
name: nightly_report
description: Builds the nightly report, one branch per region.
on:
  schedule:
    - cron: "0 2 * * *"
      timezone: Europe/Paris
  dispatch:
    inputs:
      regions: {type: array, default: [eu, us, asia], description: regions to cover}
      dry_run: {type: boolean, default: false}
nodes:
  - name: plan
    run: |
      print("planning", len(state["regions"]), "regions", flush=True)
      return {"todo": list(state["regions"])}
  - name: build
    run: |
      import time
      time.sleep({"eu": 0.6, "us": 0.9, "asia": 0.3, "archive": 60}.get(state["region"], 0.2))
      print("built", state["region"], flush=True)
      return {"rows": len(state["region"]) * 100}
  - name: publish
    run: |
      print("publishing", sum(r.state["rows"] for r in parallel_results), "rows", flush=True)
      return {}
edges:
  - {from: __start__, to: plan}
  - {from: plan, to: build, parallel: true, for_each: "state['todo']", item_var: region,
     fan_in: publish}
  - {from: build, to: publish}
  - {from: publish, to: __end__}
"""
SYNC = """\
name: sync_inventory
description: Copies the inventory; fails when the source is missing.
on:
  dispatch:
    inputs:
      source: {type: string, required: true, description: where to read from}
      retries: {type: integer, default: 2}
nodes:
  - name: fetch
    run: |
      print("reading", state["source"], flush=True)
      if state["source"] == "missing":
          raise FileNotFoundError(f"no inventory at {state['source']!r}")
      return {"items": 42}
  - name: store
    run: |
      return {"stored": state["items"]}
"""
BROKEN = "name: cleanup\nnodes:\n  - name: a\n    run: |\n      return {}\n  - name: a\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "webui"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tead-shots-") as folder:
        daemon = DaemonProcess(root=Path(folder), port=free_port())
        for name, text in [("nightly_report", REPORT), ("sync_inventory", SYNC)]:
            daemon.write(f"{name}.yaml", text)
        daemon.write("cleanup.yaml", BROKEN)
        daemon.start()
        try:
            daemon.wait_for(lambda: len(daemon.get("/api/v1/workflows").json()["workflows"]) == 3)
            shots(daemon, out)
        finally:
            daemon.stop()


def shots(daemon: DaemonProcess, out: Path) -> None:
    ok = daemon.dispatch("sync_inventory", {"source": "s3://stock"})["id"]
    failed = daemon.dispatch("sync_inventory", {"source": "missing"})["id"]
    for run_id in (ok, failed):
        daemon.wait_run(run_id, timeout_s=60)
    fan = daemon.dispatch("nightly_report")["id"]
    daemon.wait_run(fan, timeout_s=60)
    running = daemon.dispatch("nightly_report", {"regions": ["eu", "archive"]})["id"]
    with chromium() as browser:
        page, errors = new_page(browser, width=1100, height=620)
        page.goto(f"{daemon.url}/#/runs")
        page.locator("tr[data-status=running]").wait_for()
        page.screenshot(path=str(out / "runs.png"))
        page.goto(f"{daemon.url}/#/workflows")
        page.locator('tr[data-workflow="sync_inventory"] button.dispatch').click()
        page.locator("#input-source").fill("s3://stock")
        page.screenshot(path=str(out / "workflows.png"), full_page=True)
        page.goto(f"{daemon.url}/#/runs/{fan}")
        page.locator("#logs[data-done]").wait_for()
        page.screenshot(path=str(out / "run.png"), full_page=True)
        page.goto(f"{daemon.url}/#/runs/{failed}")
        page.locator("#logs[data-done]").wait_for()
        page.screenshot(path=str(out / "run-failed.png"), full_page=True)
        assert not errors, errors
    daemon.post(f"/api/v1/runs/{running}/cancel")
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
