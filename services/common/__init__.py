"""Plumbing shared by every service: settings, logs, server boot, errors, tokens, databases."""
