"""A chassis command tool: JSON arguments on stdin, the result on stdout.

chassis runs it without a shell, in the agent's directory, with CHASSIS_RUN_ID, CHASSIS_CALL_ID
and CHASSIS_IDEMPOTENCY_KEY in its environment. A non-zero exit (its stderr the reason) is a
failed call, which the model is told about.
"""

import json
import sys

args = json.load(sys.stdin)
text = args["text"]
print(json.dumps({
    "words": len(text.split()),
    "lines": len(text.splitlines()),
    "characters": len(text),
}))
