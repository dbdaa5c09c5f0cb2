"""Where the examples go: the probability that the first token of an answer starts in lower
case after three lower-case examples, by where the prompt puts them (ChatML models).

    python probe-first-token.py MODEL.gguf EXAMPLES_DIR

Prints, for each rendering, P(first token starts with a lower-case letter), P(upper case) and
the five likeliest first tokens. One question, greedy logits, llama-cpp-python directly.
"""

import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

model_path, examples_dir = sys.argv[1], Path(sys.argv[2])
llm = Llama(model_path, n_ctx=2048, n_threads=1, logits_all=True, verbose=False)
examples = [p.read_text().strip() for p in sorted(examples_dir.glob("*.txt"))]
question = "Why do banks keep cash reserves?"
system = "You are a helpful assistant."
quoted = "\n\n".join(f'Example {i + 1}:\n"""\n{t}\n"""' for i, t in enumerate(examples))


def chat(messages: list[tuple[str, str]]) -> str:
    return ("".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in messages)
            + "<|im_start|>assistant\n")


turns = [turn for text in examples
         for turn in (("user", "Write an answer in the style I like."), ("assistant", text))]
renderings = {
    "no examples": chat([("system", system), ("user", question)]),
    "quoted in the system prompt": chat([
        ("system", f"{system} Write your answer in the same style as the following examples: "
                   f"their form, length and tone, not their content.\n\n{quoted}"),
        ("user", question)]),
    "earlier exchanges": chat([("system", system), *turns, ("user", question)]),
}
vocab = [llm.detokenize([i]).decode("utf-8", "replace").strip() for i in range(llm.n_vocab())]
lower = np.array([bool(v) and v[0].isalpha() and v[0].islower() for v in vocab])
upper = np.array([bool(v) and v[0].isalpha() and v[0].isupper() for v in vocab])
for name, text in renderings.items():
    llm.reset()
    llm.eval(llm.tokenize(text.encode(), add_bos=False, special=True))
    z = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    top = [(vocab[t], round(float(p[t]), 3)) for t in np.argsort(-p)[:5]]
    print(f"{name:28s} P(lower)={p[lower].sum():.3f} P(upper)={p[upper].sum():.3f} top: {top}")
