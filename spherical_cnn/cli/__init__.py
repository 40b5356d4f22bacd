"""The command-line programs.

Each command is a module here with ``main(argv=None)`` returning the exit
status; ``scripts/<name>.py`` and the installed console scripts run it through
:func:`spherical_cnn.errors.run_cli` (one line for a user error). Command
modules import nothing heavy at module level: they parse the arguments first
(``--help`` answers without TensorFlow), then silence TensorFlow's logging
(:mod:`.common`) and import the modules that do the work.

The console-script entry points (``pyproject.toml``) are in :mod:`.console`.
"""
