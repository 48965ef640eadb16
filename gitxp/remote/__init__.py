"""Sharing the store through git remotes: push, pull, merge, and git hooks."""
