"""Subcommands of the ``visionkit`` command that live in their own module.

Each module defines ``add_parser(subparsers)``; :data:`visionkit.cli.COMMAND_MODULES` lists them.
"""
