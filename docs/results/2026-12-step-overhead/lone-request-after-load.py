"""Does a bench round's load (steered 4 + 8 Base clients) cost localpref's next lone request?

Run from anywhere with the project's venv: python lone-request-after-load.py [ROUNDS]. The
stall variant (lone-request-after-stall.txt) replaces the round's load with, for each server
in shuffled order, server.stall.measure_stall(...) and server.staggered.measure_staggered(...)
as `localpref bench --server` calls them."""
import json, os, random, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from localpref.server import bench, llama_server
from localpref.server.bench_client import measure, Target, free_port
from localpref.server.paired import paired_ratio
from localpref.models import resolve_model

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
s = bench.ServerBenchSettings(max_tokens=128, baselines=("llama-server",), clients=(1, 2, 4, 8))
p, base = bench.start_localpref(s, 2)
steered = Target("steered", base.port, f"{base.model}:recommended:concise", base.extra)
port = free_port()
pl = llama_server.start(llama_server.server_command(llama_server.find_binary(None), resolve_model(None), port, 2, 8, s.context), port)
tl = Target("llama-server", port, "base", {"ignore_eos": True})
res = {"after": [], "clean": []}
def one():
    out = {}
    for t in random.sample([base, tl], 2):
        wall, _, toks = measure(t, 1, s.prompt, 128)
        out[t.label] = toks / wall
    return out["localpref base"], out["llama-server"]
try:
    for t in (base, tl, steered):
        measure(t, 1, s.prompt, 16)
    for r in range(rounds):
        measure(steered, 4, s.prompt, 128)
        for t in random.sample([base, tl], 2):
            measure(t, 8, s.prompt, 128)
        res["after"].append(one())
        res["clean"].append(one())
        print(r, res["after"][-1], res["clean"][-1], os.getloadavg()[0], flush=True)
finally:
    p.terminate(); pl.terminate()
for k in ("after", "clean"):
    ratio = paired_ratio([a for a, _ in res[k]], [b for _, b in res[k]])
    print(k, {x: ratio[x] for x in ratio if x != "each"}, [round(a / b, 3) for a, b in res[k]])
mine = paired_ratio([a for a, _ in res["after"]], [a for a, _ in res["clean"]])
print("localpref after/clean", {x: mine[x] for x in mine if x != "each"})
json.dump(res, open(Path(__file__).with_suffix(".json"), "w"))
