"""Sensors that wait for new entries in an organization's audit log."""
