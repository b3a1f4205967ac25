"""The error the deploy tools print on one line."""


class DeployError(ValueError):
    """A config, checkpoint, video or option a user gave is not usable."""


def check_positive_int(name, value):
    """Raise :class:`DeployError` unless ``value`` is an int >= 1 (bools
    excluded)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DeployError(f'{name} must be a positive int, got {value!r}')
