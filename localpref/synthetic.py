"""Synthetic GGUF models with random weights, for benchmarks and tests only.

They let us measure what two lanes cost on model sizes we cannot download here (e.g. 1B
parameters, where decoding is memory-bound), and test a reward model with another
vocabulary. The files are written with the ``gguf`` package (llama architecture, a byte-level
SentencePiece-style vocabulary) and optionally quantized by llama.cpp. They are never
committed: callers write them to a temporary folder.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class SyntheticShape:
    """Sizes of a llama-architecture model."""

    vocab_size: int = 512
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 2048

    @property
    def n_params(self) -> int:
        head_dim = self.n_embd // self.n_head
        attention = 2 * self.n_embd * self.n_embd + 2 * self.n_embd * self.n_head_kv * head_dim
        per_layer = attention + 3 * self.n_embd * self.n_ff + 2 * self.n_embd
        return self.n_layer * per_layer + 2 * self.vocab_size * self.n_embd + self.n_embd


#: About one billion parameters, shaped like Llama 3.2 1B but with a 49k vocabulary.
ONE_BILLION = SyntheticShape(vocab_size=49152, n_embd=2048, n_layer=16, n_head=32,
                             n_head_kv=8, n_ff=8192, n_ctx=4096)


def _vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """Special tokens, the 256 byte tokens, then filler words up to ``size``."""
    import gguf

    tokens = ["<unk>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    word = 0
    while len(tokens) < size:
        tokens.append(f"▁w{word}")
        types.append(gguf.TokenType.NORMAL)
        word += 1
    if size < len(tokens):
        raise ValueError(f"A synthetic vocabulary needs at least {len(tokens)} tokens.")
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(size - 259)]
    return tokens, scores, [int(t) for t in types]


def write_synthetic_llama(path: Path, shape: SyntheticShape = SyntheticShape(),
                          *, seed: int = 0) -> Path:
    """Write a random-weight llama GGUF (float16 weights) to ``path``."""
    import gguf

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    head_dim = shape.n_embd // shape.n_head
    writer.add_name(f"synthetic-llama-{shape.n_params // 1_000_000}M")
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = _vocabulary(shape.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    def weight(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(shape.n_embd, dtype=np.float32)

    kv = shape.n_head_kv * head_dim
    writer.add_tensor("token_embd.weight", weight(shape.vocab_size, shape.n_embd))
    for layer in range(shape.n_layer):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", norm())
        writer.add_tensor(prefix + "attn_q.weight", weight(shape.n_embd, shape.n_embd))
        writer.add_tensor(prefix + "attn_k.weight", weight(kv, shape.n_embd))
        writer.add_tensor(prefix + "attn_v.weight", weight(kv, shape.n_embd))
        writer.add_tensor(prefix + "attn_output.weight", weight(shape.n_embd, shape.n_embd))
        writer.add_tensor(prefix + "ffn_norm.weight", norm())
        writer.add_tensor(prefix + "ffn_gate.weight", weight(shape.n_ff, shape.n_embd))
        writer.add_tensor(prefix + "ffn_up.weight", weight(shape.n_ff, shape.n_embd))
        writer.add_tensor(prefix + "ffn_down.weight", weight(shape.n_embd, shape.n_ff))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", weight(shape.vocab_size, shape.n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def quantize(source: Path, target: Path, file_type: str = "Q4_0") -> Path:
    """Quantize a GGUF with llama.cpp (``file_type`` names a ``LLAMA_FTYPE_MOSTLY_*``)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{file_type}")
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} (status {status}).")
    return target
