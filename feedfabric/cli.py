"""The ``feedfabric`` command (click): one entry point for every process and tool."""

from __future__ import annotations

import click

from feedfabric import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="feedfabric")
def main() -> None:
    """feedfabric: exchange gateways publishing normalized market data on ZeroMQ."""


if __name__ == "__main__":
    main()
