// One run: status, trigger, timings, a timeline of its nodes (branches of fan-outs
// included), branch results, failure details, state, and its logs (followed while it
// runs); cancel, re-run and re-run from the failure. Refreshed every POLL_MS until it ends.
import { badge, between, duration, getJson, h, lifetime, notice, postJson, showError, api, when } from "./lib.js";

const POLL_MS = 1000;

function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function actions(run) {
  const finished = !["queued", "running"].includes(run.status);
  const act = (label, cls, path, body, enabled) => h("button", {
    class: cls, disabled: !enabled,
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        const result = await postJson(`/api/v1/runs/${encodeURIComponent(run.id)}/${path}`, body);
        if (path === "rerun") location.hash = `#/runs/${encodeURIComponent(result.id)}`;
        else notice(`Run ${run.id} ${result.status}.`, "info");
      } catch (error) {
        showError(error);
        event.target.disabled = false;
      }
    },
  }, label);
  return h("div", { class: "row actions" },
    act("Cancel", "danger cancel", "cancel", undefined, !finished),
    act("Re-run", "rerun", "rerun", { from_failure: false }, finished),
    act("Re-run from failure", "rerun-failure", "rerun", { from_failure: true }, finished && run.status !== "succeeded"));
}

// Bars on one time axis: from the run's start to its end (or now, while it runs). A node
// still running when its run ended (cancelled, timed out) ended with the run, as the run.
function timeline(run) {
  const nodes = run.nodes || [];
  if (!nodes.length) return h("p", { class: "muted" }, run.status === "queued" ? "Not started yet." : "No nodes ran.");
  const now = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  const starts = nodes.map((n) => Date.parse(n.started_at));
  const start = Math.min(Date.parse(run.started_at || run.created_at), ...starts);
  const ends = nodes.map((n, i) => starts[i] + (n.duration_ms ?? Math.max(now - starts[i], 0)));
  const end = Math.max(now, ...ends);
  const span = Math.max(end - start, 1);
  const order = nodes.map((n, i) => i).sort((a, b) => starts[a] - starts[b]);
  return h("div", { class: "timeline", id: "timeline" }, order.map((i) => {
    const node = run.finished_at && nodes[i].status === "running" ? { ...nodes[i], status: run.status } : nodes[i];
    const took = node.duration_ms ?? Math.max(now - starts[i], 0);
    const bar = h("div", { class: `tl-bar ${node.status}`, title: `${node.node} ${node.status} ${duration(took)}${node.error ? `: ${node.error}` : ""}` });
    bar.style.left = `${((starts[i] - start) / span) * 100}%`;
    bar.style.width = `${Math.max((took / span) * 100, 0.3)}%`;
    return h("div", { class: `tl-row${node.branch ? " branch" : ""}`, "data-node": node.node, "data-branch": node.branch || "", "data-status": node.status },
      h("div", { class: "tl-label" }, node.branch ? h("span", { class: "muted" }, `${node.branch} › `) : null, node.node, " ", badge(node.status)),
      h("div", { class: "tl-track" }, bar),
      h("div", { class: "tl-time" }, duration(took)));
  }));
}

function branches(run) {
  const results = run.branches || [];
  if (!results.length) return null;
  return [h("h2", {}, "Branch results"), h("table", { id: "branches" },
    h("thead", {}, h("tr", {}, ["Branch", "Fan-out", "Result", "Time", "Retries", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, results.map((b) => h("tr", { "data-branch": b.branch },
      h("td", {}, b.path ? `${b.path} › ${b.branch}` : b.branch),
      h("td", {}, `${b.fan_out ?? ""} → ${b.fan_in ?? ""}`),
      h("td", {}, badge(b.success ? "succeeded" : (b.timeout ? "timed_out" : "failed"))),
      h("td", {}, duration(b.timing_ms)),
      h("td", {}, String(b.retry_count ?? 0)),
      h("td", {}, b.error ? h("pre", {}, `${b.error_type ? `${b.error_type}: ` : ""}${b.error}`) : ""))))) ];
}

function failure(run) {
  const f = run.failure;
  if (!f) return null;
  return [h("h2", {}, "Failure"), h("div", { id: "failure" },
    facts([["Node", f.node || "—"], ["Branch", f.branch || "(main)"], ["Error", `${f.error_type || ""}`], ["Message", h("pre", { class: "message" }, f.message || "")]]),
    f.traceback ? h("pre", { class: "traceback" }, f.traceback) : null)];
}

function summary(run) {
  const trigger = run.trigger || {};
  return [
    facts([
      ["Workflow", h("a", { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow)],
      ["Trigger", trigger.kind || "?"],
      ["Created", when(run.created_at)],
      ["Started", when(run.started_at)],
      ["Finished", when(run.finished_at)],
      ["Queued for", h("span", { id: "queue-wait" }, duration(between(run.created_at, run.started_at || (run.status === "queued" ? null : run.finished_at))))],
      ["Ran for", h("span", { id: "run-time" }, duration(between(run.started_at, run.finished_at)))],
      run.error ? ["Error", h("pre", { class: "run-error" }, run.error)] : null,
      ["Version", h("span", { class: "mono muted" }, (run.workflow_hash || "").slice(0, 12))],
    ]),
    Object.keys(trigger).length > 1 ? h("details", {}, h("summary", {}, "Trigger data"), json(trigger)) : null,
    run.inputs && Object.keys(run.inputs).length ? [h("h2", {}, "Inputs"), json(run.inputs)] : null,
  ];
}

function logLine(entry) {
  const who = entry.node ? `${entry.node}${entry.branch ? ` [${entry.branch}]` : ""}` : "-";
  return `${entry.ts.slice(11, 23)} ${who} ${entry.stream}: ${entry.line}\n`;
}

// The run's logs into `pre`: read once if it has ended, else followed (NDJSON) until it ends.
async function logs(run, pre, life) {
  const path = `/api/v1/runs/${encodeURIComponent(run.id)}/logs`;
  const finished = !["queued", "running"].includes(run.status);
  const add = (entry) => {
    pre.append(logLine(entry));
    pre.scrollTop = pre.scrollHeight;
  };
  if (finished) {
    for (const entry of await getJson(path, { signal: life.signal })) add(entry);
  } else {
    pre.dataset.following = "1";
    const response = await api(`${path}?follow=1`, { signal: life.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const lines = (rest + decoder.decode(value, { stream: true })).split("\n");
      rest = lines.pop();
      for (const line of lines) if (line) add(JSON.parse(line));
    }
    delete pre.dataset.following;
  }
  if (!pre.childNodes.length) pre.append("(no output)");
  pre.dataset.done = "1";
}

export function runPage(main, id) {
  const life = lifetime();
  const head = h("div");
  const body = h("div");
  const pre = h("pre", { class: "logs", id: "logs" });
  main.append(head, body, h("h2", {}, "Logs"), pre);
  let logsStarted = false;
  life.poll(async () => {
    const run = await getJson(`/api/v1/runs/${encodeURIComponent(id)}`, { signal: life.signal });
    head.replaceChildren(h("h1", {}, "Run ", h("span", { class: "mono", id: "run-id" }, run.id), h("span", { id: "run-status" }, badge(run.status))), actions(run));
    const open = new Set([...body.querySelectorAll("details[open] summary")].map((e) => e.textContent));
    body.replaceChildren(...[summary(run), h("h2", {}, "Timeline"), timeline(run), branches(run), failure(run),
      run.final_state ? [h("h2", {}, "State"), h("details", {}, h("summary", {}, "Final state"), json(run.final_state))] : null].flat(2).filter(Boolean));
    for (const e of body.querySelectorAll("details")) e.open = open.has(e.querySelector("summary").textContent); // kept across refreshes
    if (!logsStarted) {
      logsStarted = true;
      logs(run, pre, life).catch(showError);
    }
    return ["queued", "running"].includes(run.status);
  }, POLL_MS);
  return life;
}
