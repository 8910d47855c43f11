"""Stacks: Redis, PostgreSQL and Toxiproxy with the proxies `redis` and `postgres`."""

from scenarios.stack.base import Stack, StackUrls
from scenarios.stack.errors import StackError
from scenarios.stack.providers import PROVIDERS, open_stack

__all__ = ["PROVIDERS", "Stack", "StackError", "StackUrls", "open_stack"]
