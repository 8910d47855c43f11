"""The one error a stack raises: its message is a single line a user can act on."""


class StackError(Exception):
    """A stack could not be started, reached or described."""
