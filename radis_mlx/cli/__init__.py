"""The `radis-mlx` command line (main.py), its remote commands and the login-service installer."""

from radis_mlx.cli.main import main

__all__ = ["main"]
