"""Tests of the units context."""
