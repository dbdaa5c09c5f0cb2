import sys, time, statistics, json, http.client
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np, llama_cpp
from localpref.engine import LoadedModel, Context
from localpref.models import resolve_model
from localpref.server import llama_server
from localpref.server.bench_client import free_port
port = free_port()
proc = llama_server.start(llama_server.server_command(llama_server.find_binary(None), resolve_model(None), port, 2, 8, 2048), port)
model = LoadedModel(resolve_model(None))
c = Context(model, n_ctx=2048, max_lanes=8, n_threads=2)
text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n(%d) How do I keep basil alive?<|im_end|>\n<|im_start|>assistant\n"
def server(i):
    body = json.dumps({"prompt": text % i, "n_predict": 128, "ignore_eos": True, "temperature": 0, "cache_prompt": False})
    cn = http.client.HTTPConnection("127.0.0.1", port); cn.request("POST", "/completion", body, {"Content-Type": "application/json"})
    r = json.loads(cn.getresponse().read()); return r["timings"]["predicted_per_token_ms"] * 1000, r["timings"]["predicted_n"]
def mine(i):
    prompt = model.vocabulary.tokenize(text % i, add_special=False)
    lane = c.open_lane(); c.prefill([lane], [prompt]); tok = int(np.argmax(c.logits(0))); ts = []
    t00 = time.perf_counter()
    for _ in range(127):
        t0 = time.perf_counter(); c.step([lane], [tok]); ts.append(time.perf_counter() - t0); tok = int(np.argmax(c.logits(0)))
    whole = (time.perf_counter() - t00) / 127
    c.close_lane(lane); return sum(ts) / len(ts) * 1e6, whole * 1e6
try:
    server(0); mine(0)
    rows = []
    for i in range(1, int(sys.argv[1]) + 1):
        a = mine(i); b = server(i)
        rows.append((a[0], a[1], b[0])); print(i, [round(x) for x in rows[-1]], b[1], flush=True)
    print("median decode/llama-server per token:", round(statistics.median(r[0] / r[2] for r in rows), 3), "loop:", round(statistics.median(r[1] / r[2] for r in rows), 3))
finally:
    proc.terminate()
