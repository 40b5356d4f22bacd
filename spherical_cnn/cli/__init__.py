"""Command-line programs: each module has ``main(argv=None)`` returning an exit status."""
