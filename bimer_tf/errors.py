"""The one exception type for bad user input.

An `InputError` message names the input and the remedy. Command-line entry
points print it and exit with status 2 (see `bimer_tf.cli.run_main`); library
code raises it instead of letting a low-level error escape.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a config value, an argument."""
