// The tracking page (/public/reports/{code}): the reporter rates a resolved report through the
// citizen API's rating route (once), with the key of their tracking link (config.key).

const config = JSON.parse(document.getElementById("public-config").textContent);
const S = config.strings;
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
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await fetch(
        `/api/v1/citizen/reports/${encodeURIComponent(config.code)}/rating?lang=${config.lang}`,
        {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({
            satisfied: choice.value === "true",
            key: config.key,
            ...(comment ? { comment } : {}),
          }),
        },
      );
      if (response.status === 204) {
        form.hidden = true;
        const done = document.getElementById("rated");
        done.textContent = S["web.public.js.rating_sent"];
        done.hidden = false;
        document.body.dataset.rated = "1";
        return;
      }
      const data = await response.json().catch(() => ({}));
      error.textContent = data.detail || data.title || S["web.public.js.failed"];
      error.hidden = false;
    } catch {
      error.textContent = S["web.public.js.unreachable"];
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

// The reporter erases their contacts and photos (Law 91/2025/QH15) with the same key.
const eraseForm = document.getElementById("erase-form");

if (eraseForm) {
  const error = document.getElementById("erase-error");
  eraseForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!window.confirm(S["web.public5.erase.confirm"])) return;
    const button = eraseForm.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await fetch(
        `/api/v1/citizen/reports/${encodeURIComponent(config.code)}/erasure?lang=${config.lang}`,
        {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ key: config.key }),
        },
      );
      if (response.status === 204) {
        eraseForm.hidden = true;
        document.getElementById("photos-heading")?.remove();
        document.querySelector("ul.photos")?.remove();
        const done = document.getElementById("erased");
        done.textContent = S["web.public5.erase.done"];
        done.hidden = false;
        document.body.dataset.erased = "1";
        return;
      }
      const data = await response.json().catch(() => ({}));
      error.textContent = data.detail || data.title || S["web.public.js.failed"];
      error.hidden = false;
    } catch {
      error.textContent = S["web.public.js.unreachable"];
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}
