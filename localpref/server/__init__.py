"""``localpref serve``: an OpenAI-compatible HTTP front end where each request carries its own
preference (docs/server.md).

This package imports FastAPI and uvicorn, so nothing in the library imports it: only the
``serve`` command and a batch run (lazily) and the tests do. Its parts, one job each:

- ``ids``: served model ids (``ID``, ``ID:PRESET``, ``ID:METHOD:PRESET``) and their parsing;
- ``schemas``: the pydantic request models of the endpoints;
- ``translate``: a request body into the library's ``Request`` (importable alone: the batch
  runner reads the same bodies);
- ``completions``: the OpenAI response and chunk objects (chat and text) built from a result;
- ``logprobs``: an answer's ``logprobs`` in OpenAI's shapes, from its trace;
- ``jobs``: one generation, read in the event loop whenever the scheduler wakes it, its
  pieces fed to an asyncio queue;
- ``streaming``: Server-Sent Events framing of a job;
- ``errors``: OpenAI-shaped errors for every failure, FastAPI's own included;
- ``guards``: ASGI middleware for the Host check, the API key and the body size limit;
- ``state``: what the running server holds (the model once loaded, the jobs in flight);
- ``app``: the FastAPI application;
- ``batch_answer``: one line of a batch file (``localpref batch``) answered as ``app``
  answers the same body;
- ``run``: binding, loading, uvicorn, and shutting down on Ctrl-C or SIGTERM;
- ``bench``: ``localpref bench --server`` against llama-cpp-python's own server and
  llama-server, with ``bench_client`` (the streaming client), ``stall`` (the long-prompt
  stall), ``staggered`` (clients sending requests one after another), ``paired`` (ratios
  paired by round, with bootstrap intervals) and ``llama_server``.
"""
