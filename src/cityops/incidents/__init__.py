"""Incidents: cases with a workflow, SLA deadlines, escalation, a timeline, comments and files."""
