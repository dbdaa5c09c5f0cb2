"""Synthetic GGUF models with random weights, for benchmarks and tests only.

They let us measure what two lanes cost on model sizes we cannot download here (e.g. 1B
parameters, where decoding is memory-bound), and test a reward model with another
vocabulary. The files are written with the ``gguf`` package (llama architecture, a byte-level
SentencePiece-style vocabulary) and optionally quantized by llama.cpp. They are never
committed: callers write them to a temporary folder.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
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


#: SmolLM2-135M-Instruct's shape (the bundled model's; 135M parameters, V = 49k).
SMOLLM2_135M = SyntheticShape(vocab_size=49152, n_embd=576, n_layer=30, n_head=9,
                              n_head_kv=3, n_ff=1536, n_ctx=8192)

#: About one billion parameters, shaped like Llama 3.2 1B but with a 49k vocabulary.
ONE_BILLION = SyntheticShape(vocab_size=49152, n_embd=2048, n_layer=16, n_head=32,
                             n_head_kv=8, n_ff=8192, n_ctx=4096)

#: A large vocabulary like Gemma 3's (262,144 tokens) on a ~0.9B body: where the steering
#: kernels' share of a step is largest.
LARGE_VOCABULARY = SyntheticShape(vocab_size=262144, n_embd=1024, n_layer=24, n_head=16,
                                  n_head_kv=4, n_ff=4096, n_ctx=4096)


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
                          *, seed: int = 0, chat_template: str | None = CHATML_TEMPLATE,
                          split_max_tensors: int = 0,
                          renamed: Mapping[int, str] | None = None) -> Path:
    """Write a random-weight llama GGUF (float16 weights) to ``path``; ``chat_template=None``
    writes none (a base model). With ``split_max_tensors`` the model is split into parts of
    at most that many tensors (``NAME-00001-of-0000N.gguf`` beside ``path``, as llama.cpp's
    gguf-split names them), and the first part's path is returned. ``renamed`` gives some
    tokens other texts (a tokenizer that differs in a few tokens).

    Tensors are generated and written one at a time, so writing a 1B model needs memory for
    its largest tensor only, not for the whole 2.5 GB of weights.
    """
    import gguf

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
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
    for token, text in (renamed or {}).items():
        tokens[token] = text
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    tensors = _tensor_shapes(shape)
    for name, dims in tensors:
        dtype = np.dtype(np.float16 if len(dims) == 2 else np.float32)
        writer.add_tensor_info(name, dims, dtype, int(np.prod(dims)) * dtype.itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, dims in tensors:
        if len(dims) == 2:
            data = (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16)
        else:
            data = np.ones(dims, dtype=np.float32)
        writer.write_tensor_data(data)
    written = writer.format_shard_names(path)
    writer.close()
    return written[0]


def _tensor_shapes(shape: SyntheticShape) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of the model in file order: (name, NumPy shape); 1-D ones are norms."""
    kv = shape.n_head_kv * (shape.n_embd // shape.n_head)
    embd, ff = shape.n_embd, shape.n_ff
    tensors: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (shape.vocab_size, embd))]
    for layer in range(shape.n_layer):
        prefix = f"blk.{layer}."
        tensors += [
            (prefix + "attn_norm.weight", (embd,)),
            (prefix + "attn_q.weight", (embd, embd)),
            (prefix + "attn_k.weight", (kv, embd)),
            (prefix + "attn_v.weight", (kv, embd)),
            (prefix + "attn_output.weight", (embd, embd)),
            (prefix + "ffn_norm.weight", (embd,)),
            (prefix + "ffn_gate.weight", (ff, embd)),
            (prefix + "ffn_up.weight", (ff, embd)),
            (prefix + "ffn_down.weight", (embd, ff)),
        ]
    tensors += [("output_norm.weight", (embd,)), ("output.weight", (shape.vocab_size, embd))]
    return tensors


def quantize(source: Path, target: Path, file_type: str = "Q4_0") -> Path:
    """Quantize a GGUF with llama.cpp (``file_type`` names a ``LLAMA_FTYPE_MOSTLY_*``)."""
    from localpref.llama_library import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{file_type}")
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} (status {status}).")
    return target


#: Named shapes for ``build_synthetic`` and ``localpref bench --synthetic``.
SHAPES: dict[str, SyntheticShape] = {
    "tiny": SyntheticShape(), "135m": SMOLLM2_135M, "1b": ONE_BILLION,
    "262k": LARGE_VOCABULARY,
}


def synthetic_file_name(name: str, file_type: str | None = "Q4_0") -> str:
    """The file name ``build_synthetic`` uses for a named shape and quantization."""
    return f"synthetic-{name}-{(file_type or 'F16').lower()}.gguf"


def build_synthetic(name: str, directory: Path, file_type: str | None = "Q4_0",
                    *, seed: int = 0) -> Path:
    """A synthetic model of a named shape in ``directory``, written (and quantized) if absent.

    The float16 file is deleted after quantizing (a 1B one is about 2.5 GB; Q4_0 about 0.7 GB).
    Reuses an existing file of the same name. Never point ``directory`` into the repository.
    """
    if name not in SHAPES:
        raise ValueError(f"Unknown synthetic shape {name!r}; choose one of {', '.join(SHAPES)}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / synthetic_file_name(name, file_type)
    if target.is_file():
        return target
    f16 = directory / f".{synthetic_file_name(name, None)}.partial"
    partial = directory / f".{target.name}.partial"
    try:
        write_synthetic_llama(f16, SHAPES[name], seed=seed)
        if file_type is None:
            f16.replace(target)
        else:
            quantize(f16, partial, file_type)
            partial.replace(target)
    finally:
        f16.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m localpref.synthetic DIRECTORY [--shape 1b] [--type Q4_0|F16]``: print the
    path of the (possibly reused) synthetic model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m localpref.synthetic",
                                     description="Write a random-weight llama GGUF for benchmarks.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--type", default="Q4_0", help="llama.cpp file type, or F16 for none")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    file_type = None if args.type.upper() == "F16" else args.type.upper()
    print(build_synthetic(args.shape, args.directory, file_type, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
