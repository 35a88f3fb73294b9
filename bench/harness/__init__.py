"""The overhead benchmark's machinery, shared by ``bench/overhead.py`` (every provider SDK) and
``bench/peers.py`` (the openai SDK under other instrumentations).

- :mod:`.wire`: the canned exchange every provider answers (prompt, text, token counts);
- :mod:`.fakes`: in-process transports answering pre-built bytes (httpx / httpx2
  ``MockTransport``, a ``requests`` adapter, a ``grpc.aio`` channel);
- :mod:`.providers`: one module per SDK: its wire format, its calls, what a span must say;
- :mod:`.child`: what runs in the measured child processes;
- :mod:`.measure`: the parent side (paired wall-clock blocks, callgrind, start-up, memory);
- :mod:`.report`: the tables.

Nothing here opens a socket: the children refuse any connection attempt (see
:func:`.child.forbid_network`).
"""
