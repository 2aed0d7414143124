"""Notifications: webhooks, e-mail, SMS and Zalo about alerts and incidents, per-user
preferences, and the delivery log (all delivered through the core outbox)."""
