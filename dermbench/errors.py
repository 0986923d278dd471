"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class DermbenchError(Exception):
    """A problem with the user's input: data, options, plugins. Printed without a traceback."""


class DataError(DermbenchError):
    """A dataset, CSV or image that cannot be read as promised. The message names the file/row."""


class ConfigError(DermbenchError):
    """An unknown task, method, component or option, or a value of the wrong type."""


class PluginError(DermbenchError):
    """A plugin that failed to import or register, or two plugins claiming one name."""


class TrainingError(DermbenchError):
    """Training that cannot go on (a loss that is NaN or infinite); the record so far is kept."""
