// The workflows page: every workflow file (valid, or its load error with file:line), its
// triggers and next fire times, enable/disable, and a dispatch form built from its typed
// inputs (`on.dispatch.inputs`).
import { badge, getJson, h, lifetime, notice, postJson, showError, when } from "./lib.js";

function triggerList(triggers) {
  const items = [];
  for (const s of triggers.schedule || []) {
    const rule = s.cron ? `cron ${s.cron}${s.timezone ? ` (${s.timezone})` : ""}` : `every ${s.every}`;
    items.push(h("li", {}, `schedule: ${rule}`, h("br"),
      h("span", { class: "muted next-fire" }, `next: ${s.next_fire ? when(s.next_fire) : "—"}`)));
  }
  if (triggers.watch) items.push(h("li", {}, `watch: ${(triggers.watch.paths || []).join(", ")}`));
  if (triggers.workflow_run) items.push(h("li", {}, `after: ${(triggers.workflow_run.workflows || []).join(", ")}`));
  if (triggers.dispatch) items.push(h("li", {}, "dispatch"));
  return items.length ? h("ul", { class: "triggers" }, items) : h("span", { class: "muted" }, "none (dispatch only)");
}

function field(name, spec) {
  const id = `input-${name}`;
  const type = spec.type || "string";
  const required = Boolean(spec.required);
  const given = spec.default !== null && spec.default !== undefined;
  let control;
  if (type === "boolean") {
    control = h("input", { id, name, type: "checkbox", checked: given && spec.default === true });
  } else if (type === "integer" || type === "number") {
    control = h("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", required });
    if (given) control.value = String(spec.default);
  } else if (type === "object" || type === "array") {
    control = h("textarea", { id, name, rows: 3, cols: 40, required, placeholder: type === "array" ? "[...] (JSON)" : "{...} (JSON)" });
    if (given) control.value = JSON.stringify(spec.default);
  } else {
    control = h("input", { id, name, type: "text", required, size: 40 });
    if (given) control.value = String(spec.default);
  }
  control.dataset.type = type;
  return h("label", { for: id },
    h("span", {}, name, required ? " *" : "", h("br"), h("span", { class: "muted" }, type, spec.description ? ` — ${spec.description}` : "")),
    control);
}

// The inputs the controls hold, typed as the spec says; an Error naming the field
// otherwise. The controls are passed in, not looked up through the form (a control named
// like one of the form's own properties shadows it), and the inputs object has no
// prototype (an input named `__proto__` is an input like any other).
function formInputs(controls) {
  const inputs = Object.create(null);
  for (const control of controls) {
    const type = control.dataset.type;
    if (type === "boolean") { inputs[control.name] = control.checked; continue; }
    const text = control.value;
    if (text === "" && control.required) throw new Error(`${control.name}: required`);
    if (text === "") continue; // left out: the daemon fills in its default
    if (type === "integer" || type === "number") {
      const value = Number(text);
      if (!Number.isFinite(value) || (type === "integer" && !Number.isInteger(value))) {
        throw new Error(`${control.name}: ${JSON.stringify(text)} is not ${type === "integer" ? "an integer" : "a number"}`);
      }
      inputs[control.name] = value;
    } else if (type === "object" || type === "array") {
      let value;
      try { value = JSON.parse(text); } catch (error) { throw new Error(`${control.name}: not JSON (${error.message})`); }
      inputs[control.name] = value;
    } else {
      inputs[control.name] = text;
    }
  }
  return inputs;
}

function dispatchForm(entry, close) {
  const specs = (entry.triggers.dispatch && entry.triggers.dispatch.inputs) || {};
  const error = h("p", { class: "error", role: "alert" });
  const labels = Object.entries(specs).map(([name, spec]) => field(name, spec));
  const controls = labels.map((label) => label.lastChild);
  // The listener is added by h before the controls are appended (see formInputs).
  return h("form", {
    class: "form dispatch-form", "data-workflow": entry.name, novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        const run = await postJson(`/api/v1/workflows/${encodeURIComponent(entry.name)}/dispatch`, { inputs: formInputs(controls) });
        location.hash = `#/runs/${encodeURIComponent(run.id)}`;
      } catch (problem) {
        error.textContent = problem.message;
      }
    },
  },
  h("strong", {}, `Run ${entry.name}`),
  labels.length ? labels : h("p", { class: "muted" }, "No inputs."),
  error,
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Run workflow"),
    h("button", { type: "button", onclick: close }, "Close")));
}

function rows(entry, refresh) {
  const formRow = h("tr", { class: "form-row", hidden: true });
  const toggle = async () => {
    try {
      await postJson(`/api/v1/workflows/${encodeURIComponent(entry.name)}/${entry.enabled ? "disable" : "enable"}`);
      notice(`${entry.name} ${entry.enabled ? "disabled" : "enabled"}.`, "info");
      refresh();
    } catch (error) { showError(error); }
  };
  const open = () => {
    formRow.replaceChildren(h("td", { colspan: 5 }, dispatchForm(entry, () => { formRow.hidden = true; })));
    formRow.hidden = false;
  };
  const state = entry.valid
    ? h("td", {}, badge("valid"))
    : h("td", {}, badge("invalid"), h("pre", { class: "load-error" }, entry.error || ""));
  const main = h("tr", { "data-workflow": entry.name },
    h("td", {}, h("a", { href: `#/runs?workflow=${encodeURIComponent(entry.name)}`, class: "name" }, entry.name),
      entry.description ? h("div", { class: "muted" }, entry.description) : null),
    state,
    h("td", {}, entry.valid ? triggerList(entry.triggers) : "—"),
    h("td", {}, badge(entry.enabled ? "enabled" : "disabled")),
    h("td", {}, h("div", { class: "row" },
      h("button", { class: "dispatch", disabled: !entry.valid || !entry.enabled, onclick: open }, "Run…"),
      h("button", { class: "toggle", onclick: toggle }, entry.enabled ? "Disable" : "Enable"))));
  return [main, formRow];
}

export function workflowsPage(main) {
  const life = lifetime();
  const body = h("tbody", { id: "workflows" });
  main.append(h("h1", {}, "Workflows"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Workflow", "Loads", "Triggers", "State", "Actions"].map((t) => h("th", {}, t)))), body));
  const refresh = async () => {
    const data = await getJson("/api/v1/workflows", { signal: life.signal });
    body.replaceChildren(...(data.workflows.length ? data.workflows.flatMap((e) => rows(e, refresh))
      : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No workflow files."))]));
  };
  refresh().catch(showError);
  return life;
}
