"""Reviewing results: diffs, checkout, charts and reports."""
