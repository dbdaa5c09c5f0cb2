"""``localpref batch``: OpenAI batch files answered as ``localpref serve`` answers each body,
resumably, on this machine or spread over Ray actors (docs/batch.md). One job per module:

- ``lines``: the file format: request lines read and checked, answer lines built;
- ``output``: the answers file: appended line by line, resumed, sorted at the end;
- ``recorder``: the writing side of a run: pending lines, progress bar, summary;
- ``local``: worker threads feeding the model's scheduler on this machine;
- ``ray_runner``: Ray actors, each with the model loaded once (imported only with ``--ray``);
- ``run``: ``batch()``, the entry point of the API and the command.

A line is answered by ``localpref.server.batch_answer``, with the server's own validation,
translation and errors; ``run`` and ``ray_runner`` import it when a batch runs, so only then
are the server package and its web stack loaded. Only ``ray_runner`` imports Ray; neither is
imported by ``import localpref``.
"""
