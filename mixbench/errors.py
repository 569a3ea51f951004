"""User-facing errors.

A :class:`ConfigError` is a user mistake (bad key, bad value, missing data). The CLI prints its message as one
line and exits with status 2, without a traceback.
"""


class ConfigError(Exception):
    """A configuration or input mistake the user can fix; printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RunDirError(ConfigError):
    """The run dir cannot be used: another process holds it, or it cannot be written (read-only, disk full).

    Like any :class:`ConfigError` it is printed as one line with exit code 2: the user fixes it by waiting for
    the other process, or by pointing ``work_dir`` at storage that can be written.
    """
