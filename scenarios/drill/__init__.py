"""Runbook drills: incidents followed by the runbook's steps, executed and checked."""
