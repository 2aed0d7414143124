// The tracking page (/public/reports/{code}): the reporter rates a resolved report through the
// citizen API's rating route (once), and may erase their contacts and photos (Law 91/2025/QH15),
// both with the key of their tracking link (config.key).

const config = JSON.parse(document.getElementById("public-config").textContent);
const S = config.strings;

/**
 * POST a JSON body to one of this report's citizen routes; true once it is done (204).
 * Otherwise the API's message (or a generic one) is shown in `error` and false returned.
 */
async function send(route, body, button, error) {
  button.disabled = true;
  try {
    const response = await fetch(
      `/api/v1/citizen/reports/${encodeURIComponent(config.code)}/${route}?lang=${config.lang}`,
      {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ ...body, key: config.key }),
      },
    );
    if (response.status === 204) return true;
    const data = await response.json().catch(() => ({}));
    error.textContent = data.detail || data.title || S["web.public.js.failed"];
  } catch {
    error.textContent = S["web.public.js.unreachable"];
  } finally {
    button.disabled = false;
  }
  error.hidden = false;
  return false;
}

function done(id, text, flag) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.hidden = false;
  document.body.dataset[flag] = "1";
}

const form = document.getElementById("rating-form");

if (form) {
  const error = document.getElementById("rating-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const choice = form.querySelector("input[name=satisfied]:checked");
    if (!choice) {
      error.textContent = form.querySelector("legend").textContent;
      error.hidden = false;
      return;
    }
    const comment = form.comment.value.trim();
    const body = { satisfied: choice.value === "true", ...(comment ? { comment } : {}) };
    if (await send("rating", body, form.querySelector("button[type=submit]"), error)) {
      form.hidden = true;
      done("rated", S["web.public.js.rating_sent"], "rated");
    }
  });
}

const eraseForm = document.getElementById("erase-form");

if (eraseForm) {
  const error = document.getElementById("erase-error");
  eraseForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!window.confirm(S["web.public5.erase.confirm"])) return;
    if (await send("erasure", {}, eraseForm.querySelector("button[type=submit]"), error)) {
      eraseForm.hidden = true;
      document.getElementById("photos-heading")?.remove();
      document.querySelector("ul.photos")?.remove();
      done("erased", S["web.public5.erase.done"], "erased");
    }
  });
}
