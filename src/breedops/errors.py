"""Errors a user can cause and fix: the CLI prints them as one clear line, without a traceback."""


class BreedopsError(Exception):
    """Base class for every error the user can act on."""


class ConfigurationError(BreedopsError):
    """A setting, flag or environment variable is missing or invalid."""


class EmulatorError(BreedopsError):
    """The local AWS emulator could not be started, stopped or reached."""
