// The login form: post the credentials to the cookie login API, then go where the visitor was.

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

function show(message) {
  error.textContent = message;
  error.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    show(error.dataset.missing);
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (response.ok) {
      window.location.assign(form.dataset.next || "/");
      return;
    }
    let detail = "";
    if (response.status !== 401) {
      // Throttling and other refusals carry a translated problem+json detail worth showing.
      detail = (await response.json().catch(() => ({}))).detail || "";
    }
    show(detail || error.dataset.failed);
    form.password.value = "";
    form.password.focus();
  } catch {
    show(error.dataset.unreachable);
  } finally {
    button.disabled = false;
  }
});
