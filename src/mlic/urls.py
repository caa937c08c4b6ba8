"""URLs as we print them: without the credentials a URL may carry.

Credentials belong in the environment or a git credential helper, not in a URL; a URL that carries
them anyway (`https://user:token@host/...`) is shown as `https://***@host/...` in every log line,
error and summary of ours, and in the tools' messages we pass on (git and dvc print the URL back).
"""

from __future__ import annotations

import re

#: The userinfo (`user:token@`) of every URL in a text.
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return URL_CREDENTIALS.sub("***@", text)
