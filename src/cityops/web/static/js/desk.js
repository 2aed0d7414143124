// The incident detail page: SLA countdowns, and the assign / status / comment forms, which call
// the incidents API (it enforces permissions; its problem+json messages are shown as they come).

import { csrfToken } from "./session.js";

// The list page has no configuration: it is plain HTML (links and a GET form).
const configElement = document.getElementById("desk-config");
const config = configElement
  ? JSON.parse(configElement.textContent) : { strings: {}, assignees: [], lang: "vi" };
const S = config.strings;
const errorBox = document.getElementById("desk-error");
const statusBox = document.getElementById("desk-status");

/** Format a duration in minutes as "2 ngày 3 giờ 5 phút" / "2 d 3 h 5 min". */
function span(ms) {
  const minutes = Math.max(0, Math.floor(ms / 60000));
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  const units = config.lang === "en" ? ["d", "h", "min"] : ["ngày", "giờ", "phút"];
  const parts = [];
  if (days) parts.push(`${days} ${units[0]}`);
  if (days || hours) parts.push(`${hours} ${units[1]}`);
  parts.push(`${rest} ${units[2]}`);
  return parts.join(" ");
}

function tick() {
  const now = Date.now();
  for (const element of document.querySelectorAll(".countdown[data-due]")) {
    if (!element.dataset.due) continue;
    const left = Date.parse(element.dataset.due) - now;
    if (left >= 0) {
      element.textContent = S["web.desk.sla.left"].replace("{time}", span(left));
      element.classList.remove("sla-breached");
    } else {
      element.textContent = S["web.desk.sla.overdue"] + " " + span(-left);
      element.classList.add("sla-breached");
    }
  }
}
tick();
setInterval(tick, 15000);

/** Show the API's problem+json message (and the field errors it names). */
function showError(problem) {
  // The field messages say what to fix; the summary ("1 field to fix") only when there are none.
  const fields = (problem.errors || []).map((e) => e.message).filter(Boolean);
  const lines = fields.length
    ? fields : [problem.detail || problem.title || S["web.desk.action.failed"]];
  errorBox.textContent = lines.join(" — ");
  errorBox.hidden = false;
  errorBox.focus?.();
}

async function call(path, body) {
  errorBox.hidden = true;
  statusBox.textContent = "";
  let response;
  try {
    response = await fetch(`/api/v1/incidents/${config.id}${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "Accept-Language": config.lang,
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(body),
    });
  } catch {
    showError({});
    return false;
  }
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return false;
  }
  if (!response.ok) {
    showError(await response.json().catch(() => ({})));
    return false;
  }
  statusBox.textContent = S["web.desk.action.saved"];
  // The page is rendered by the server: reload it to show the new state and timeline.
  window.location.reload();
  return true;
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
}

const assignForm = document.getElementById("assign-form");
if (assignForm) {
  const department = document.getElementById("assign-department");
  const assignee = document.getElementById("assign-assignee");
  const fill = () => {
    const keep = assignee.value;
    assignee.replaceChildren(new Option(S["web.desk.assignee.none"], ""));
    for (const user of config.assignees) {
      // Officers of the chosen department, and users bound to no department (operators).
      if (user.department && user.department !== department.value) continue;
      assignee.add(new Option(user.department ? `${user.name} (${user.department})` : user.name, String(user.id)));
    }
    if ([...assignee.options].some((o) => o.value === keep)) assignee.value = keep;
  };
  fill();
  department.addEventListener("change", fill);
  assignForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(assignForm, true);
    const body = { department_code: department.value };
    if (assignee.value) body.assignee_id = Number(assignee.value);
    if (!(await call("/assign", body))) busy(assignForm, false);
  });
}

const transitionForm = document.getElementById("transition-form");
if (transitionForm) {
  transitionForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = event.submitter ? event.submitter.value : "";
    const note = document.getElementById("transition-note").value.trim();
    busy(transitionForm, true);
    const body = note ? { to, note } : { to };
    if (!(await call("/transition", body))) busy(transitionForm, false);
  });
}

const commentForm = document.getElementById("comment-form");
if (commentForm) {
  commentForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(commentForm, true);
    const body = {
      body: commentForm.elements.body.value,
      public: commentForm.elements.public.checked,
    };
    if (!(await call("/comments", body))) busy(commentForm, false);
  });
}

document.body.dataset.ready = "1";
