// The runs page: newest first, filtered by workflow and status, a page at a time (the
// API's `before` cursor), refreshed every POLL_MS while it is shown.
import { STATUSES, badge, between, duration, getJson, h, lifetime, runLink, showError, when } from "./lib.js";

const PAGE = 50; // runs a page (`limit=` in the location changes it)
const POLL_MS = 1000;

function target(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) query.set(key, value);
  const text = query.toString();
  return `#/runs${text ? `?${text}` : ""}`;
}

function triggerText(trigger) {
  const kind = trigger && trigger.kind ? trigger.kind : "?";
  if (kind === "workflow_run" && trigger.run) return `after ${trigger.run.workflow}`;
  if (kind === "schedule" || kind === "catchup") return `${kind} ${when(trigger.scheduled_time)}`;
  return kind;
}

function row(run) {
  return h("tr", { "data-run-id": run.id, "data-status": run.status },
    h("td", {}, runLink(run.id)),
    h("td", {}, run.workflow),
    h("td", {}, badge(run.status)),
    h("td", {}, triggerText(run.trigger)),
    h("td", {}, when(run.created_at)),
    h("td", {}, duration(between(run.started_at, run.finished_at))));
}

export function runsPage(main, params) {
  const life = lifetime();
  const workflow = params.get("workflow") || "";
  const status = params.get("status") || "";
  const before = params.get("before") || "";
  const limit = Number(params.get("limit")) || PAGE;
  const page = limit === PAGE ? "" : String(limit);
  const go = (changes) => { location.hash = target({ workflow, status, limit: page, ...changes, before: "" }); };

  const workflowSelect = h("select", { id: "filter-workflow", "aria-label": "workflow", onchange: (e) => go({ workflow: e.target.value }) },
    h("option", { value: "" }, "all workflows"),
    workflow ? h("option", { value: workflow, selected: true }, workflow) : null);
  const statusSelect = h("select", { id: "filter-status", "aria-label": "status", onchange: (e) => go({ status: e.target.value }) },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))));
  const body = h("tbody", { id: "runs" });
  const pager = h("div", { class: "pager" });
  main.append(
    h("h1", {}, "Runs"),
    h("div", { class: "row" }, workflowSelect, statusSelect, before ? h("span", { class: "muted" }, "older runs") : null),
    h("table", {}, h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Trigger", "Created", "Duration"].map((t) => h("th", {}, t)))), body),
    pager);

  getJson("/api/v1/workflows", { signal: life.signal }).then((data) => {
    for (const entry of data.workflows) {
      if (entry.name !== workflow) workflowSelect.append(h("option", { value: entry.name }, entry.name));
    }
  }).catch(showError);

  life.poll(async () => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (workflow) query.set("workflow", workflow);
    if (status) query.set("status", status);
    if (before) query.set("before", before);
    const data = await getJson(`/api/v1/runs?${query}`, { signal: life.signal });
    const runs = data.runs;
    body.replaceChildren(...(runs.length ? runs.map(row)
      : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs."))]));
    pager.replaceChildren(...[
      before ? h("a", { href: target({ workflow, status, limit: page }), id: "newest" }, "← Newest") : null,
      runs.length === limit ? h("a", { href: target({ workflow, status, limit: page, before: runs[runs.length - 1].id }), id: "older" }, "Older →") : null,
    ].filter(Boolean));
    if (!performance.getEntriesByName("tead:runs-shown").length) performance.mark("tead:runs-shown");
  }, POLL_MS);
  return life;
}
