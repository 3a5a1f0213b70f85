"""The ``skdarts`` command.

::

    skdarts demo                       # default zoo -> OT selection -> warm search
    skdarts search FOLDER              # fit on an image folder, save the model
    skdarts zoo list | show NAME | remove NAME | build SOURCE... | select DATA

Every command has ``--help``. Bad input ends the command with exit status 2
and one line on stderr (``skdarts: error: ...``), not a traceback; ``--debug``
shows the traceback.
"""

from .parser import build_parser, main

__all__ = ["build_parser", "main"]
