"""Which process state slows a lone request after the bench's stall/staggered phases?
A: stall+staggered, S: stall only, G: staggered only, B: fresh; llama-server L as reference."""
import json, os, random, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from localpref.server import bench, llama_server
from localpref.server.bench_client import measure, Target, free_port
from localpref.server.paired import paired_ratio
from localpref.server.stall import measure_stall
from localpref.server.staggered import measure_staggered, request_lengths
from localpref.models import resolve_model

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
s = bench.ServerBenchSettings(max_tokens=128, baselines=("llama-server",), clients=(1, 2, 4, 8))
procs, targets = [], {}
for name in "ASGB":
    p, t = bench.start_localpref(s, 2)
    procs.append(p); targets[name] = Target(name, t.port, t.model, t.extra)
port = free_port()
procs.append(llama_server.start(llama_server.server_command(llama_server.find_binary(None), resolve_model(None), port, 2, 8, s.context), port))
targets["L"] = Target("L", port, "base", {"ignore_eos": True})
lengths = request_lengths(4, 6, 128)
res = {k: [] for k in targets}
try:
    for t in targets.values():
        measure(t, 1, s.prompt, 16)
    for name in "AS":
        measure_stall(targets[name], s.prompt, s.stall_stream_tokens, s.stall_prompt_tokens)
    for name in "AG":
        measure_staggered(targets[name], s.prompt, lengths)
    for r in range(rounds):
        for name in random.sample(list(targets), len(targets)):
            wall, _, toks = measure(targets[name], 1, s.prompt, 128)
            res[name].append(toks / wall)
        print(r, {k: round(v[-1], 1) for k, v in res.items()}, os.getloadavg()[0], flush=True)
finally:
    for p in procs: p.terminate()
for name in "ASGB":
    for ref in "LB":
        if name == ref: continue
        x = paired_ratio(res[name], res[ref])
        print(name, "/", ref, {k: x[k] for k in x if k != "each"})
json.dump(res, open(__import__("pathlib").Path(__file__).with_suffix(".json"), "w"))
