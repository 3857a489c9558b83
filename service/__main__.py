"""`python -m service` runs the zhice CLI."""

from service.cli import main

main()
