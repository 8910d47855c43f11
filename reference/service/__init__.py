"""The reference service: the target contract over HTTP."""
