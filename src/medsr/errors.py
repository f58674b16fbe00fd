"""Errors a user can cause. The CLI prints them as one line; ``--debug`` shows the traceback."""


class MedsrError(Exception):
    """Base class for errors caused by input, configuration or environment (not by bugs)."""


class UnreadableImage(MedsrError):
    """A file cannot be turned into grayscale slices; the message is the reason, without the path."""


class ConfigError(MedsrError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


class DownloadError(MedsrError):
    """A download failed after its retries, or its content did not verify."""
