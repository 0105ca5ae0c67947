"""The exception type for bad user input, and the reason a TensorFlow op error gives.

An `InputError` message names the input and the remedy. Command-line entry
points print it and exit with status 2 (see `bimer_tf.cli.run_main`); library
code raises it instead of letting a low-level error escape.
"""

import re


class InputError(ValueError):
    """Bad input from the user: a file, a config value, an argument."""


def op_error_message(error) -> str:
    """The reason a TensorFlow op error gives, in one line, without graph decorations.

    A loaded SavedModel reports `Graph execution error:`, the node and its
    definition site, then the reason; a failed `tf.debugging` assertion wraps
    its message as `assertion failed: [message] [Condition ...]`. The serving
    graph's checks put the reason in that message (e.g. `audio_wav: expected
    16000 Hz 16-bit PCM WAV; resample ...`), so that is what is kept.
    """
    text = str(getattr(error, "message", error))
    reason = ""
    for line in text.splitlines():
        if (
            not line.strip()
            or line[0].isspace()  # stack frames of the node's definition site
            or line.startswith(("Graph execution error", "Detected at node", "<stack traces", "Node: "))
        ):
            continue
        reason = line
        break
    reason = re.sub(r"\{\{[^}]*\}\}", "", reason)  # {{function_node ...}}, {{node ...}}
    reason = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", reason).strip()
    asserted = re.match(r"assertion failed: \[(.*?)\](?: \[|$)", reason)
    if asserted:
        reason = asserted.group(1)
    return reason or type(error).__name__
