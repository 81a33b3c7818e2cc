"""The installed autoevol version, at the ground floor so that any room can import it.

Read from the package metadata (``pyproject.toml``'s ``version`` as installed); a source tree that was
never installed reports ``0.0.0+unknown`` instead of failing.
"""

from importlib.metadata import PackageNotFoundError, version

#: Reported when autoevol runs from a source tree without installed metadata.
UNKNOWN_VERSION = "0.0.0+unknown"


def installed_version(distribution: str = "autoevol") -> str:
    """The version of ``distribution`` from its installed metadata, or ``UNKNOWN_VERSION`` if it is not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return UNKNOWN_VERSION


#: The version recorded in evolver files and compile run headers.
__version__ = installed_version()

__all__ = ["UNKNOWN_VERSION", "__version__", "installed_version"]
