"""Screenshots of the MLflow UI for docs/training.md ("Reading the runs in MLflow"), taken in Debian's Chromium.

    .venv/bin/mlflow ui --backend-store-uri sqlite:////tmp/shots/mlflow.db --port 5077 &
    python scripts/mlflow_ui_screenshots.py --url http://127.0.0.1:5077 --experiment 1 --out docs/img

Needs `pip install playwright` (its Python driver only: the browser is /usr/bin/chromium, nothing is downloaded).
It opens the experiment on the model-training pages, expands the parent runs and the rows (every split's dataset
input shows), then the chart view filtered to the validation curves and to the system metrics.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path


def parent_runs(url: str, experiment: str) -> list[str]:
    """Names of the experiment's top-level runs, through the tracking server's REST API."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [experiment]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response).get("runs", [])
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    return [t["mlflow.runName"] for t in tags if "mlflow.parentRunId" not in t and "mlflow.runName" in t]


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:5000")
    ap.add_argument("--experiment", default="1", help="experiment id")
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 820})
        page.goto(f"{args.url}/#/experiments/{args.experiment}?workflowType=machine_learning")
        parents = parent_runs(args.url, args.experiment)
        page.wait_for_selector(f"text={parents[0]}", timeout=60_000)
        time.sleep(2)
        try:
            page.locator("[aria-label='Close']").first.click(timeout=3000)  # the assistant side panel
        except Exception:  # noqa: BLE001 - not shown in every version
            pass
        for name in parents:
            # Expand a parent run: its stage runs show below it.
            page.locator("[role=row]", has_text=name).first.locator("button").first.click()
            time.sleep(1)
        page.get_by_text("Expand rows").click()
        time.sleep(3)
        page.screenshot(path=str(args.out / "mlflow-runs-datasets.png"))
        page.mouse.click(296, 120)  # the chart-view toggle beside the table toggle
        time.sleep(6)
        search = page.get_by_placeholder("Search metric charts")
        for query, name in (("val_", "mlflow-compare-curves"), ("system/", "mlflow-system-metrics")):
            search.fill(query)
            time.sleep(6)
            page.screenshot(path=str(args.out / f"{name}.png"))
        browser.close()


if __name__ == "__main__":
    main()
