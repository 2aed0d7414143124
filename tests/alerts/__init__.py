"""Tests of the alerts context."""
