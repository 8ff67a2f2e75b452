// tead's web page: a router over the location's hash (#/runs, #/runs/ID, #/workflows).
import { notice, setToken, token } from "./lib.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";
import { workflowsPage } from "./workflows.js";

let current = null;

// A part of the location, decoded; as it is if it is not valid percent-encoding (a
// hand-edited address: the page then says what the API says of it).
function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch (_) {
    return text;
  }
}

function route() {
  if (current) current.stop();
  notice("");
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  const params = new URLSearchParams(query || "");
  const main = document.getElementById("main");
  main.replaceChildren();
  const match = path.match(/^\/runs\/([^/]+)$/);
  const section = path.startsWith("/workflows") ? "workflows" : "runs";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.nav === section);
  }
  if (match) current = runPage(main, decoded(match[1]));
  else if (section === "workflows") current = workflowsPage(main);
  else current = runsPage(main, params);
}

const field = document.getElementById("token");
field.value = token();
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(field.value.trim());
  route();
  notice(field.value.trim() ? "Token kept for this tab." : "Token cleared.", "info");
});
window.addEventListener("hashchange", route);
route();
