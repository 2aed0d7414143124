"""Web pages: server-rendered HTML in Vietnamese (English available), static assets."""
