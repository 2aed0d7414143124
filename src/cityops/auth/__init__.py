"""Users, roles and scopes, sessions and tokens, API keys, login throttling and the audit log."""
