"""The error the deploy tools print on one line."""


class DeployError(ValueError):
    """A config, checkpoint, video or option a user gave is not usable."""
