import ctypes, sys, time, statistics, os
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np, llama_cpp
from llama_cpp._ggml import libggml
from localpref.engine import LoadedModel, Context
from localpref.models import resolve_model

class TPP(ctypes.Structure):
    _fields_ = [("cpumask", ctypes.c_bool * 512), ("n_threads", ctypes.c_int), ("prio", ctypes.c_int),
                ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool), ("paused", ctypes.c_bool)]
libggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
libggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
libggml.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
libggml.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
libggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
libggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
dev = libggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
reg = libggml.ggml_backend_dev_backend_reg(dev)
new = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(TPP))(libggml.ggml_backend_reg_get_proc_address(reg, b"ggml_threadpool_new"))
init = ctypes.CFUNCTYPE(None, ctypes.POINTER(TPP), ctypes.c_int)(libggml.ggml_backend_reg_get_proc_address(reg, b"ggml_threadpool_params_init") or ctypes.cast(libggml.ggml_threadpool_params_init, ctypes.c_void_p).value)
lib = llama_cpp.llama_cpp._lib
lib.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
poll = int(sys.argv[1]) if len(sys.argv) > 1 else 50
model = LoadedModel(resolve_model(None))
ctxs = {}
for name in ("plain", "pool"):
    c = Context(model, n_ctx=2048, max_lanes=8, n_threads=2)
    if name == "pool":
        p = TPP(); init(ctypes.byref(p), 2); p.poll = poll
        tp = new(ctypes.byref(p)); assert tp
        lib.llama_attach_threadpool(c.handle, tp, None)
    ctxs[name] = c
prompt = model.vocabulary.tokenize("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow do I keep basil alive?<|im_end|>\n<|im_start|>assistant\n", add_special=False)
res = {k: [] for k in ctxs}
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 6):
    for name, c in ctxs.items():
        lane = c.open_lane()
        c.prefill([lane], [prompt])
        tok = int(np.argmax(c.logits(0)))
        ts = []
        for i in range(128):
            t0 = time.perf_counter(); c.step([lane], [tok]); ts.append(time.perf_counter() - t0)
            tok = int(np.argmax(c.logits(0)))
        c.close_lane(lane)
        res[name].append(sum(ts) / len(ts) * 1e6)
    print(r, {k: round(v[-1]) for k, v in res.items()}, flush=True)
for k, v in res.items(): print(k, round(statistics.median(v)))
