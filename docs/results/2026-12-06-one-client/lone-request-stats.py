import sys, json, time, http.client
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from localpref.server import bench, llama_server
from localpref.server.bench_client import measure, Target, free_port, SYSTEM_PROMPT
from localpref.models import resolve_model
import itertools
num = itertools.count(1000)
def once(t, mt=128):
    body = json.dumps({"model": t.model, "stream": True, "temperature": 0, "max_tokens": mt,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": f"({next(num)}) How do I keep basil alive?"}], **t.extra})
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=600)
    st = time.perf_counter(); c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); arr = []; lp = None
    for raw in r:
        line = raw.decode().strip()
        if line == "data: [DONE]": break
        if not line.startswith("data: "): continue
        ch = json.loads(line[6:])
        for choice in ch.get("choices") or []:
            if (choice.get("delta") or {}).get("content"): arr.append(time.perf_counter())
        if ch.get("localpref"): lp = ch["localpref"]
        for choice in ch.get("choices") or []:
            if choice.get("localpref"): lp = choice["localpref"]
    end = time.perf_counter()
    gaps = [b - a for a, b in zip(arr, arr[1:])]
    return end - st, arr[0] - st, max(gaps), lp
s = bench.ServerBenchSettings(max_tokens=128, baselines=("llama-server",), clients=(1,))
p, t = bench.start_localpref(s, 2)
port = free_port()
lp = llama_server.start(llama_server.server_command(llama_server.find_binary(None), resolve_model(None), port, 2, 8, s.context), port)
L = Target("L", port, "base", {"ignore_eos": True})
try:
    once(t, 16); once(L, 16)
    for i in range(int(sys.argv[1])):
        a = once(t); b = once(L)
        st = a[3] or {}
        stats = st.get("stats", st)
        keys = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in stats.items() if k in ("decode_ms", "llama_decode_ms", "steer_ms_per_token", "tokens_per_s", "prefill_ms", "queued_ms")}
        print(f"{i} lp wall {a[0]*1000:.0f} ttft {a[1]*1000:.0f} maxgap {a[2]*1000:.0f} | L wall {b[0]*1000:.0f} ttft {b[1]*1000:.0f} maxgap {b[2]*1000:.0f} | ratio {b[0]/a[0]:.3f} {keys}", flush=True)
finally:
    p.terminate(); lp.terminate()
