// The web session: the CSRF token the server left in a cookie, and the logout button.

/** Return the CSRF token to echo in X-CSRF-Token on every change. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)cityops_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

const logout = document.getElementById("logout");
if (logout) {
  logout.addEventListener("click", async () => {
    logout.disabled = true;
    try {
      await fetch("/api/v1/auth/logout", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken() },
      });
    } finally {
      // Even if the server is unreachable, leave the screen: the cookie expires on its own.
      window.location.assign("/login");
    }
  });
}
