"""Small GGUF files the tests write into ``tmp_path`` (never into the repository)."""

from __future__ import annotations

from pathlib import Path

import gguf


def write_vocabulary_only_gguf(path: Path) -> Path:
    """A llama GGUF holding a tokenizer alone: no tensors, no hyperparameters, no name."""
    writer = gguf.GGUFWriter(str(path), "llama")
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256)), "▁a", "▁b"]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([int(gguf.TokenType.UNKNOWN), *[int(gguf.TokenType.CONTROL)] * 2,
                            *[int(gguf.TokenType.BYTE)] * 256,
                            *[int(gguf.TokenType.NORMAL)] * 2])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path
