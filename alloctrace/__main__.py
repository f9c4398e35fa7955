"""``python -m alloctrace``: the same as the ``alloctrace`` command."""

from alloctrace.cli import main

main()
