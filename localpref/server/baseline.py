"""llama-cpp-python's own OpenAI server (``python -m llama_cpp.server``), the baseline of
``localpref bench --server``, with llama.cpp's extra CPU buffer types off.

localpref's engine loads models with ``use_extra_bufts = False`` because llama.cpp's AMX
matmul path (an extra buffer type) segfaults on some CPUs; llama-cpp-python's server has no
setting for it and dies on its first request there. This launcher sets the same model
parameter, so both servers run the same llama.cpp code, then hands over to the server's own
``main``: ``python -m localpref.server.baseline --model PATH --port N ...`` takes the flags of
``python -m llama_cpp.server``. Needs its extras (sse-starlette, starlette-context,
pydantic-settings: the dev extras of localpref).
"""

from __future__ import annotations

import sys


def _model_params_without_extra_buffers() -> None:
    import llama_cpp.llama_cpp as bindings

    default = bindings.llama_model_default_params

    def params():  # noqa: ANN202 - a ctypes structure
        value = default()
        value.use_extra_bufts = False
        return value

    bindings.llama_model_default_params = params


def main() -> None:
    _model_params_without_extra_buffers()
    from llama_cpp.server.__main__ import main as server_main

    sys.argv[0] = "llama_cpp.server"
    server_main()


if __name__ == "__main__":
    main()
