"""Applying inbound messages: changes and snapshots per category, and control messages per kind."""
