"""The one exception type users see.

Anything the user can fix (a bad flag, a typo in pipeline.toml, a corrupt shard, a missing
compiler) is raised as `HaloError` with a one-line message that names the thing and how to
fix it. The CLI prints it without a traceback; everything else is a bug and keeps its traceback.
"""


class HaloError(Exception):
    """A user-facing error: the message is one line and says what to do."""
