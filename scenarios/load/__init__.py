"""The Locust load test: the `load` command and the read of its statistics."""
