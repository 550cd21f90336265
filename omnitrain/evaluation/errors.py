"""What ``omnitrain eval`` refuses, with a message that says what to change."""


class EvalError(ValueError):
    """A bad manifest line, a scorer that cannot be built, a wrong combination of options."""
