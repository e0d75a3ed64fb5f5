"""Answering a request in the server's event loop thread, without a worker.

Under waitress, a request normally goes from the event loop thread (which
reads it) to a worker thread (which runs the application and sends the
answer), and the worker wakes the loop again when it is done: two thread
hand-offs, a pipe write and a poll round for every request, which cost more
than the application's own work when the answer is already in memory.

So :mod:`wsgi_app.server`, when created with ``answer_in_loop=True``, first
offers each GET or HEAD without a body to the application in the loop thread,
with ``environ[IN_LOOP_KEY]`` set.  The application answers it there only from
memory (the login cache, the body cache, the rules for one's own stores: a
``stat`` or two, no file read, no key derivation), or raises
:class:`AnswerLater` before it has done anything else: nothing is written, logged or counted, and the request
goes to a worker thread with a new environ, as any other request does.
"""
from __future__ import annotations

IN_LOOP_KEY = "wsgi_app.in_loop"
"""In the environ (True) when the request is offered in the event loop thread."""


class AnswerLater(BaseException):
    """The request needs a worker thread (a file to read, a key to derive, a body to
    take): raised by the application for a request offered in the loop.

    A ``BaseException``, as ``GeneratorExit`` is, because it is not an error: it
    must pass untouched through the ``except Exception`` of waitress's channel
    (which would answer 500) and of the application's error handling."""
