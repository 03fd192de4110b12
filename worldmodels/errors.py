"""User-facing errors: the CLI turns these into one line on stderr and exit status 2."""


class UserError(Exception):
    """Bad input or an unusable folder/file; the message says what is wrong and what to do."""


class ConfigError(UserError):
    """Unknown config key, wrong type or bad value."""


class CheckpointError(UserError):
    """Missing, corrupt, unsafe or mismatched checkpoint."""


class RunFolderError(UserError):
    """A folder that holds no run, or a run that cannot be resumed as asked."""


class Interrupted(Exception):
    """A signal stopped an evaluation before its episodes ended. Nothing of the phase is kept:
    the step's checkpoint is not written (or best.pt stands, or no final score is recorded),
    so a rerun redoes the phase and reaches the uninterrupted result."""
