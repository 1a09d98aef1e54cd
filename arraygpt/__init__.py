"""The arraygpt command line. The library API lives in engine/ (model) and backends/ (adapters)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arraygpt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
