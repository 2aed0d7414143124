"""Tests of the cross-cutting core: errors, i18n, operations endpoints."""
