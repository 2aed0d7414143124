"""Tests of the auth context."""
