"""Lone-request A/B of localpref source trees beside llama-server, interleaved rounds in shuffled order.

Run with the project's venv: python ab-server-trees.py ROUNDS CLIENTS LABEL=TREE [LABEL=TREE ...]; each
TREE is a copy of the project whose `localpref serve` runs (PYTHONPATH=TREE)."""
import json, os, random, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from unittest import mock
from localpref.server import bench, llama_server
from localpref.server.bench_client import measure, Target, free_port
from localpref.server.paired import paired_ratio
from localpref.models import resolve_model

rounds, clients = int(sys.argv[1]), int(sys.argv[2])
trees = dict(a.split("=") for a in sys.argv[3:])
s = bench.ServerBenchSettings(max_tokens=128, baselines=("llama-server",), clients=(1, 2, 4, 8))
procs, targets = [], {}
for label, tree in trees.items():
    env = dict(os.environ, PYTHONPATH=tree)
    with mock.patch.dict(os.environ, env):
        cwd = os.getcwd(); os.chdir(tree)
        p, t = bench.start_localpref(s, 2)
        os.chdir(cwd)
    procs.append(p); targets[label] = Target(label, t.port, t.model, t.extra)
port = free_port()
procs.append(llama_server.start(llama_server.server_command(llama_server.find_binary(None), resolve_model(None), port, 2, 8, s.context), port))
targets["L"] = Target("L", port, "base", {"ignore_eos": True})
res = {k: [] for k in targets}
try:
    for t in targets.values():
        measure(t, 1, s.prompt, 16)
    for r in range(rounds):
        for name in random.sample(list(targets), len(targets)):
            wall, _, toks = measure(targets[name], clients, s.prompt, 128)
            res[name].append(toks / wall)
        print(r, {k: round(v[-1], 1) for k, v in res.items()}, os.getloadavg()[0], flush=True)
finally:
    for p in procs: p.terminate()
labels = list(trees)
for name in labels:
    for ref in ["L"] + labels:
        if name == ref: continue
        x = paired_ratio(res[name], res[ref])
        print(name, "/", ref, {k: x[k] for k in x if k != "each"})
