"""llama.cpp through llama-cpp-python's low-level API: one model, one context, several lanes.

A *lane* is one llama.cpp sequence: the same conversation rendered with or without the user's
preference. Every step puts the new token of every lane into ONE ``llama_batch`` and calls
``llama_decode`` once, so two lanes cost one forward pass over a batch of two rather than two
passes. Each lane has a KV stream of its own (llama.cpp's ``kv_unified`` off), so a token's
attention reads its own lane's cells only, and a long prompt prefix shared by several lanes is
evaluated once and copied to the others with ``llama_memory_seq_cp``. A finished lane's stream
may keep its cells for the next lane whose prompt starts the same way (``close_lane(keep=True)``,
``open_lane(prefix)``; docs/design.md, "Lanes and the KV cache").

Why not ``llama_cpp.Llama``: it holds a single sequence, its ``logits_processor`` hook swallows
exceptions and cannot see a second context, and its ``detokenize`` drops pieces over 32 bytes
in 0.3.36. We keep the weights in one ``llama_model`` and drive batches ourselves.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localpref.errors import ModelError, PromptTooLongError, SettingsError
from localpref.gguf_header import GGUFInfo, read_gguf_header
from localpref.interrupt_hold import interrupt_held
from localpref.llama_library import llama_cpp
from localpref.llama_log import init_backend, load_watch
from localpref.split_files import check_parts
from localpref.stream_choice import choose_streams, common_prefix

#: From this many rows in one decode llama.cpp's CPU flash attention takes a tiled kernel
#: (``GGML_FA_TILE_Q`` in ggml-cpu, llama-cpp-python 0.3.36) that rounds differently from the
#: row-by-row one (tenths of a nat on the bundled model). Below it every row of a decode is
#: computed as it would be alone, so a prefill joins its small decodes only below it. (One row
#: alone over a cache window of 512 cells or more, with 2 threads or more, is yet another
#: kernel, the cells split between threads: joined, such a row is computed as in any batch.)
ROW_BY_ROW_LIMIT = 64
#: The smallest window of one lane a model is loaded with (``n_ctx``, ``--ctx``): a chat
#: template alone takes a dozen tokens.
MIN_CONTEXT = 16
#: A prefix of this many tokens that a later lane of a prefill shares with an earlier one is
#: evaluated once and copied (a decode more); a shorter one is evaluated in each lane.
SHARED_PREFIX_COPY = ROW_BY_ROW_LIMIT // 2
#: The most lanes (sequences) one llama.cpp context holds (``LLAMA_MAX_SEQ`` in the llama.cpp
#: that llama-cpp-python 0.3.36 vendors).
MAX_LANES = 256

#: The most threads llama.cpp takes (``GGML_MAX_N_THREADS`` in ggml.h): more crash or hang it.
MAX_THREADS = 512
#: A lane opens on a free stream that adds a run of streams to the decode when that stream's
#: kept cells hold this many more tokens of its prompt (``stream_choice.choose_streams``).
REUSE_FAR_STREAM = 64


def available_cores() -> int:
    """The number of cores this process may run on (the default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


class Vocabulary:
    """Tokenizer and detokenizer of a loaded model."""

    def __init__(self, model_handle: llama_cpp.llama_model_p) -> None:
        self._vocab = llama_cpp.llama_model_get_vocab(model_handle)
        #: llama.cpp's vocabulary pointer (for its samplers, such as a grammar's)
        self.pointer = self._vocab
        self.size: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.adds_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.bos_id: int = llama_cpp.llama_vocab_bos(self._vocab)
        self.eos_id: int = llama_cpp.llama_vocab_eos(self._vocab)
        self._piece_buffer = ctypes.create_string_buffer(256)
        #: ``piece`` is read from several threads at once (the scheduler's, the server's,
        #: a batch's); llama.cpp writes into the one buffer with the GIL released
        self._piece_lock = threading.Lock()
        #: each token's bytes once read (``piece``): a vocabulary's pieces never change, and a
        #: call into llama.cpp costs about 25 us a token, a dictionary's look-up well under 1
        self._pieces: dict[bool, dict[int, bytes]] = {False: {}, True: {}}
        #: calls into llama.cpp under way, by thread (``reading``), which ``close`` waits for
        #: in the other threads: a caller's thread tokenizes while another closes the model
        self._readers: collections.Counter[int] = collections.Counter()
        self._closed = False
        #: (reentrant: a finalizer the collector runs while this thread holds it may close)
        self._reading_done = threading.Condition(threading.RLock())
        ends, controls = [], []
        for token in range(self.size):
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                ends.append(token)
            if llama_cpp.llama_vocab_is_control(self._vocab, token):
                controls.append(token)
        self.end_of_generation_ids: frozenset[int] = frozenset(ends)
        #: control tokens: the chat template's markup (``<|im_start|>``, ``<start_of_turn>``,
        #: BOS...), never text; ``tokenize`` reads their strings only with ``parse_special``
        self.control_ids: frozenset[int] = frozenset(controls)
        #: the tokens an answer ends at: every end-of-generation token, and every control
        #: token, which is all the tokens that could open a turn (``<|im_start|>``...)
        self.answer_end_ids: frozenset[int] = self.end_of_generation_ids | self.control_ids

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around a call into llama.cpp's vocabulary: ``ModelError`` once the model is
        closed, and ``close`` waits for the calls under way (a segfault otherwise: the
        weights freed under another thread's tokenize)."""
        me = threading.get_ident()
        with self._reading_done:
            if self._closed:
                raise ModelError("The model is closed; load it again to use it.")
            self._readers[me] += 1
        try:
            yield
        finally:
            with self._reading_done:
                self._readers[me] -= 1
                if not self._readers[me]:
                    del self._readers[me]
                self._reading_done.notify_all()

    def read_here(self) -> bool:
        """Whether the calling thread is inside a call into llama.cpp (``reading``): a
        finalizer the garbage collector runs there must not free the weights. (No lock: only
        this thread changes its own entry.)"""
        return threading.get_ident() in self._readers

    def close(self) -> None:
        """No call into llama.cpp from now on; returns once those under way in other threads
        have ended (one of this thread's own cannot end while it waits)."""
        me = threading.get_ident()
        with self._reading_done:
            self._closed = True
            self._reading_done.wait_for(lambda: not self._readers.keys() - {me})

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS where the model asks for it."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        with self.reading():
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buffer, capacity, add_special, parse_special
            )
            if count < 0:
                capacity = -count
                buffer = (llama_cpp.llama_token * capacity)()
                count = llama_cpp.llama_tokenize(
                    self._vocab, data, len(data), buffer, capacity, add_special, parse_special
                )
        return list(buffer[:count])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character).

        Our own wrapper over ``llama_token_to_piece``: it grows its buffer for long pieces,
        where llama-cpp-python 0.3.36's ``detokenize`` silently drops pieces over 32 bytes.
        Each token's piece is read once and kept.
        """
        known = self._pieces[bool(special)]
        piece = known.get(token)
        if piece is not None:
            return piece
        with self.reading(), self._piece_lock:
            size = llama_cpp.llama_token_to_piece(
                self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special
            )
            if size < 0:
                self._piece_buffer = ctypes.create_string_buffer(-size)
                size = llama_cpp.llama_token_to_piece(
                    self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special
                )
            piece = self._piece_buffer.raw[:size]
        known[int(token)] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of a token list (special tokens not rendered)."""
        return b"".join(self.piece(token) for token in tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        """The vocabulary entry of a token, as stored in the GGUF."""
        with self.reading():
            text = llama_cpp.llama_vocab_get_text(self._vocab, token) or b""
        return text.decode("utf-8", errors="replace")

    def token_texts(self) -> list[bytes]:
        """Every token's vocabulary entry, as stored in the GGUF, read in one call of
        ``reading`` (``token_text`` token by token took 1.5 s for 262,144 tokens)."""
        get_text = llama_cpp.llama_vocab_get_text
        with self.reading():
            return [get_text(self._vocab, token) or b"" for token in range(self.size)]

    def is_end_of_generation(self, token: int) -> bool:
        """True for every end token (EOS, ``<|im_end|>``, ``<end_of_turn>``...)."""
        return token in self.end_of_generation_ids

    def ends_answer(self, token: int) -> bool:
        """True where an answer ends: an end token, or a control token that could open a turn
        (``<|im_start|>``, ``<start_of_turn>``...): the model has left the answer."""
        return token in self.answer_end_ids


def _load(path: Path, params: llama_cpp.llama_model_params) -> Any:
    """llama.cpp's model handle for ``path``; ``ModelError`` naming llama.cpp's reason when
    it cannot load the file (a Ctrl-C during the load: KeyboardInterrupt, ``load_watch``)."""
    with load_watch(params) as watch:
        handle = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if handle and watch.interrupted:
            llama_cpp.llama_model_free(handle)
    if not handle:
        reason = watch.reason or "the file may be corrupt"
        if reason.startswith("unknown model architecture"):
            reason += (f" (llama-cpp-python {llama_cpp.__version__}'s llama.cpp does not "
                       "know it)")
        raise ModelError(f"llama.cpp could not load {path}: {reason}.")
    for line in watch.errors:  # a load that went through: its errors are still said
        sys.stderr.write(line)
    return handle


def window_problem(n_ctx: int, trained: int | None, name: str) -> str | None:
    """Why a window of ``n_ctx`` tokens is refused for the model ``name`` trained for
    ``trained`` tokens (None: it is not): a larger one only costs memory, since the model
    reads no further."""
    if trained and n_ctx > trained:
        return (f"A window of {n_ctx} tokens (--ctx, n_ctx) is more than {name} was trained "
                f"for ({trained} tokens).")
    return None


def loading_problem(path: Path, header: GGUFInfo) -> str | None:
    """Why llama.cpp cannot load ``path`` (an architecture it does not know, metadata it
    needs and misses), read from its header and vocabulary alone (no weights); None when it
    can. ``header``: the file's, already read. ``doctor`` asks this of a model before
    anything loads it."""
    init_backend()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        llama_cpp.llama_model_free(_load(path, params))
    except ModelError as error:
        return str(error)
    if header.tensor_count == 0:  # its vocabulary loads; the model lacks its hyperparameters
        return (f"{path} holds no weights (no tensors: a vocabulary-only GGUF, which "
                "llama.cpp loads for its tokenizer alone).")
    return None


def gpu_offload_built() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (CUDA, Vulkan, Metal)."""
    return bool(llama_cpp.llama_supports_gpu_offload())


class LoadedModel:
    """The weights of one GGUF file, loaded once and shared by every context on it."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0) -> None:
        init_backend()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"Model file {self.path} does not exist.")
        read_gguf_header(self.path)  # refuse what llama.cpp would choke on, before it sees it
        check_parts(self.path)  # a split model: from its first part, every part beside it
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        # No "extra" CPU buffer types: on a CPU with AMX, a llama.cpp build compiled for it
        # (GGML_NATIVE, the default) puts the weights in AMX buffers, and its AMX matmul
        # crashes the process (a segfault in ggml_backend_amx_mul_mat, llama-cpp-python
        # 0.3.36, Q4_1, seen on a 2-core Xeon with amx_int8). The plain CPU kernels are used.
        params.use_extra_bufts = False
        handle = self.handle = _load(self.path, params)
        self.vocabulary = Vocabulary(handle)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(handle)
        self.n_gpu_layers = n_gpu_layers
        self.chat_template: str | None = self.metadata("tokenizer.chat_template")
        self.name: str = self.metadata("general.name") or self.path.stem

    def metadata(self, key: str) -> str | None:
        """A string value of the GGUF metadata, or None when absent."""
        size = llama_cpp.llama_model_meta_val_str(self.handle, key.encode(), None, 0)
        if size < 0:
            return None
        buffer = ctypes.create_string_buffer(size + 1)
        llama_cpp.llama_model_meta_val_str(self.handle, key.encode(), buffer, size + 1)
        return buffer.value.decode("utf-8", errors="replace")

    @property
    def n_params(self) -> int:
        """The number of weights."""
        return int(llama_cpp.llama_model_n_params(self.handle))

    @property
    def kv_bytes_per_cell(self) -> int:
        """Bytes one KV-cache cell takes: a float16 K and V row per layer and KV head."""
        head_dim = (llama_cpp.llama_model_n_embd(self.handle)
                    // max(llama_cpp.llama_model_n_head(self.handle), 1))
        n_head_kv = llama_cpp.llama_model_n_head_kv(self.handle)
        return int(llama_cpp.llama_model_n_layer(self.handle) * 2 * n_head_kv * head_dim * 2)

    def close(self) -> None:
        """Free the weights (no context on this model may be used afterwards)."""
        if getattr(self, "handle", None):
            if getattr(self, "vocabulary", None) is not None:
                self.vocabulary.close()  # (waits for another thread's tokenize to end)
            llama_cpp.llama_model_free(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


class PrefillStopped(Exception):
    """``Context.prefill`` was asked to stop; ``evaluated`` tokens were evaluated by then."""

    def __init__(self, evaluated: int) -> None:
        super().__init__(f"prefill stopped after {evaluated} tokens")
        self.evaluated = evaluated


@dataclass
class _Row:
    """One token of a prefill decode: its lane's sequence and its position there."""

    token: int
    position: int
    seq_id: int
    logits: bool = False


@dataclass
class LaneState:
    """What one llama.cpp sequence holds: its id and the tokens in its KV cache."""

    seq_id: int
    tokens: list[int]


class Context:
    """One llama.cpp context with up to ``max_lanes`` sequences, each in a KV stream of its own.

    ``n_ctx`` is the window of ONE lane; the context holds ``n_ctx * max_lanes`` cells, ``n_ctx``
    per stream (llama.cpp rounds a stream up to a multiple of 256 cells).

    Why a stream per lane (``kv_unified`` off), not one cache shared by every lane: in a
    shared cache a token's attention spans every cell in use up to the highest one (llama.cpp's
    ``n_kv``), the other lanes' cells masked but still visited, so a step of 8 lanes cost 8
    times the attention of one; and a lane's freed cells would leave holes where llama.cpp puts
    a live lane's next token BEHIND that lane's earlier cells (it searches from the start of
    the cache once its head runs past the cells in use). Attention would then visit the lane's
    keys in another order; the sums round differently, the 8-bit quantized activations of the
    next matmul round differently, and over 30 layers the log-probabilities move by tenths of a
    nat. The shared cache therefore used to *park* freed cells until the last lane closed, and
    under steady load (a server, a batch) it grew until full, every step paying attention over
    all of it. In a stream of its own a lane's cells are always positions 0.. in order: a lane
    given up frees its cells at once, and its logits are bit-for-bit those of decoding it
    alone, whatever ran beside it. Sharing a prefix between streams copies data (a whole
    sequence, at the next decode; ``_prefill_steps``), where a shared cache copied ownership.
    A stream given back may keep its cells (``close_lane(keep=True)``) for the next lane that
    starts the same way; its prompt is then evaluated in other decode shapes than a fresh one,
    which can round a logit differently (docs/design.md, "Lanes and the KV cache").
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        n_ctx: int = 4096,
        max_lanes: int = 4,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        if not 1 <= max_lanes <= MAX_LANES:
            raise ModelError(f"A context holds 1 to {MAX_LANES} lanes (got {max_lanes}).")
        self.max_lanes = max_lanes
        self.n_batch = n_batch
        threads = n_threads or available_cores()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * max_lanes
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = max_lanes
        params.n_threads = threads
        params.n_threads_batch = n_threads_batch or threads
        params.kv_unified = False  # one stream per lane: see the class
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        handle = None
        try:
            with interrupt_held():  # it logs as it goes: a Ctrl-C there would be dropped
                handle = llama_cpp.llama_init_from_model(model.handle, params)
        except KeyboardInterrupt:  # delivered once the context was made: it is not kept
            if handle:
                llama_cpp.llama_free(handle)
            raise
        if not handle:
            raise ModelError(f"llama.cpp could not create a context for {model.path}.")
        self.handle = handle
        self.n_threads = threads
        self.memory = llama_cpp.llama_get_memory(handle)
        self.vocab_size = model.vocabulary.size
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._batch_tokens = np.ctypeslib.as_array(self._batch.token, shape=(n_batch,))
        self._batch_positions = np.ctypeslib.as_array(self._batch.pos, shape=(n_batch,))
        self._batch_n_seq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(n_batch,))
        self._batch_wants_logits = np.ctypeslib.as_array(self._batch.logits, shape=(n_batch,))
        self._batch_seq_slots = [self._batch.seq_id[i] for i in range(n_batch)]
        self._batch_n_seq[:] = 1
        self._free_seq_ids = list(range(max_lanes))
        #: free sequences whose cells were kept: their tokens
        self._kept: dict[int, list[int]] = {}
        self._logit_views: dict[int, np.ndarray] = {}
        #: the batch rows of the last decode's outputs, in order (None: every row, a step)
        self._output_rows: list[int] | None = None
        #: ``llama_decode`` calls so far
        self.decodes = 0
        self._lock = threading.RLock()

    # -- lanes --------------------------------------------------------------------------

    def open_lane(self, prefix: Sequence[int] | None = None) -> LaneState:
        """``open_lanes`` for one lane."""
        return self.open_lanes([prefix])[0]

    def open_lanes(self, prefixes: Sequence[Sequence[int] | None]) -> list[LaneState]:
        """Reserve a free sequence id for each lane opened together, as
        ``stream_choice.choose_streams`` says (by the lanes running beside them and the cells
        the free streams kept). A lane without a prefix starts with an empty cache. With one
        (the tokens the lane will be prefilled with), the lane keeps the cells its stream kept
        (a finished request's, ``close_lane(keep=True)``) as far as they match: the prefill
        then evaluates only what differs (``_prefill_rows``)."""
        with self._lock:
            if len(self._free_seq_ids) < len(prefixes):
                raise ModelError(f"All {self.max_lanes} lanes of the context are in use.")
            seq_ids = choose_streams(self.max_lanes, self._free_seq_ids, self._kept, prefixes,
                                     far_reuse=REUSE_FAR_STREAM)
            for seq_id in seq_ids:
                self._free_seq_ids.remove(seq_id)
            kept = [self._kept.pop(seq_id, None) for seq_id in seq_ids]
        lanes = []
        for seq_id, prefix, cells in zip(seq_ids, prefixes, kept, strict=True):
            if cells is not None and prefix and common_prefix(cells, prefix) > 0:
                lanes.append(LaneState(seq_id=seq_id, tokens=cells))
            else:
                llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
                lanes.append(LaneState(seq_id=seq_id, tokens=[]))
        return lanes

    @property
    def joined_rows_limit(self) -> int:
        """The most rows a prefill puts in one decode by joining smaller ones (under
        ``ROW_BY_ROW_LIMIT``, so each row is computed as alone; at most ``n_batch``)."""
        return min(ROW_BY_ROW_LIMIT - 1, self.n_batch)

    @staticmethod
    def cached_tokens(lane: LaneState, target: Sequence[int]) -> int:
        """How many of ``target``'s tokens the lane's cache holds already (before its
        prefill): a chat's history, or a kept stream's shared prefix. The prefill evaluates
        the rest, the last token always."""
        return min(common_prefix(lane.tokens, target), max(len(target) - 1, 0))

    def empty_lane(self, lane: LaneState) -> None:
        """Free a lane's cache cells and keep its sequence id."""
        self._release_cells(lane.seq_id, 0)
        lane.tokens = []

    def close_lane(self, lane: LaneState, *, keep: bool = False) -> None:
        """Give back a lane's sequence id. Its cells are freed, or with ``keep`` left in its
        stream for a later ``open_lane(prefix)`` that starts the same way (a server's next
        request with the same system prompt, or the next turn of a conversation a client
        sends whole): kept only when the cache holds exactly ``lane.tokens``."""
        if keep and lane.tokens and self._holds_exactly(lane):
            with self._lock:
                self._kept[lane.seq_id] = list(lane.tokens)
        else:
            self.empty_lane(lane)
        with self._lock:
            if lane.seq_id not in self._free_seq_ids:
                self._free_seq_ids.append(lane.seq_id)
                self._free_seq_ids.sort()

    def _holds_exactly(self, lane: LaneState) -> bool:
        """Whether the lane's stream holds positions 0 .. len(tokens) - 1 and no others (not
        so after a failed decode, which may have written some of its rows)."""
        return (llama_cpp.llama_memory_seq_pos_min(self.memory, lane.seq_id) == 0
                and llama_cpp.llama_memory_seq_pos_max(self.memory, lane.seq_id)
                == len(lane.tokens) - 1)

    def _release_cells(self, seq_id: int, start: int) -> None:
        """Free positions ``start``.. of a sequence (its own stream: nothing else moves)."""
        if llama_cpp.llama_memory_seq_pos_max(self.memory, seq_id) >= start:
            llama_cpp.llama_memory_seq_rm(self.memory, seq_id, start, -1)

    # -- evaluation ---------------------------------------------------------------------

    def prefill(
        self,
        lanes: Sequence[LaneState],
        targets: Sequence[Sequence[int]],
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Bring every lane's cache to its target tokens; the next logits are their last ones.

        ``prefill_steps`` run to the end. ``should_stop`` is asked before each decode (each
        chunk of at most ``n_batch`` tokens): when it answers True, ``PrefillStopped`` is
        raised and every lane holds what was evaluated so far.
        Returns the number of tokens evaluated.
        """
        evaluated = 0
        steps = self.prefill_steps(lanes, targets)
        while True:
            if should_stop is not None and should_stop():
                steps.close()
                raise PrefillStopped(evaluated)
            try:
                count, _ = next(steps)
            except StopIteration:
                return evaluated
            evaluated += count

    def prefill_steps(
        self, lanes: Sequence[LaneState], targets: Sequence[Sequence[int]]
    ) -> Iterator[tuple[int, bool]]:
        """The prefill of ``prefill`` one ``llama_decode`` at a time (a scheduler interleaves
        other work between them); yields ``(tokens evaluated, final)`` after each decode.

        Each lane keeps the part of its cache that already matches its target (a chat's
        history) and evaluates only the rest, in chunks of at most ``n_batch`` tokens. A lane
        whose target shares a prefix with an earlier lane's cached cells copies them
        (``llama_memory_seq_cp``); a prefix still to evaluate is copied or evaluated in each
        lane (see ``_prefill_rows``). The last token of every lane is in the final decode
        (``final`` True), after which ``logits(i)`` is lane ``i``'s until the next decode.
        Consecutive decodes that together hold fewer than ``ROW_BY_ROW_LIMIT`` rows are one
        decode: lanes whose rows stay under it cost one decode together, and every logit is
        what the separate decodes give. The targets are checked before anything is evaluated.
        """
        for target in targets:
            if len(target) == 0:
                raise SettingsError("The prompt rendered to no tokens.")
            if len(target) >= self.n_ctx:
                raise PromptTooLongError(
                    f"The prompt is {len(target)} tokens long; the context holds {self.n_ctx}."
                )
        if len(lanes) > self.n_batch:
            raise ModelError("More lanes than fit in one batch.")
        return self._prefill_steps(list(lanes), [list(target) for target in targets])

    def _prefill_steps(
        self, lanes: list[LaneState], targets: list[list[int]]
    ) -> Iterator[tuple[int, bool]]:
        own, deferred, finals = self._prefill_rows(lanes, targets)
        by_seq = {lane.seq_id: (lane, target) for lane, target in zip(lanes, targets, strict=True)}
        most = self.joined_rows_limit
        if deferred:  # the donors' rows first, then the copies and the rest
            for rows in _merge_small(_chunks(own, self.n_batch), most):
                self._decode_rows(rows, by_seq)
                yield len(rows), False
            own = [self._copy_prefix(lanes[index], lanes[source], targets[index], shared)
                   for index, source, shared in deferred]
        second = _merge_small(_chunks(own, self.n_batch) + [finals], most)
        for index, rows in enumerate(second):
            self._decode_rows(rows, by_seq)
            yield len(rows), index == len(second) - 1

    def _copy_prefix(self, lane: LaneState, donor: LaneState, target: list[int],
                     shared: int) -> list[_Row]:
        """Give ``lane`` the donor's first ``shared`` positions (its cache holds them); the
        rows still to evaluate for ``lane`` but its last token.

        Across streams llama.cpp copies a whole sequence (the data moves at the next decode),
        so the copy's positions past the shared prefix are dropped again."""
        llama_cpp.llama_memory_seq_cp(self.memory, donor.seq_id, lane.seq_id, -1, -1)
        llama_cpp.llama_memory_seq_rm(self.memory, lane.seq_id, shared, -1)
        lane.tokens = target[:shared]
        return [_Row(target[p], p, lane.seq_id) for p in range(shared, len(target) - 1)]

    def _prefill_rows(
        self, lanes: list[LaneState], targets: list[list[int]]
    ) -> tuple[list[list[_Row]], list[tuple[int, int, int]], list[_Row]]:
        """The rows a prefill evaluates: each lane's new tokens but its last; the lanes that
        wait for an earlier lane's cache instead (index, donor index, shared length); and the
        last token of each lane (logits wanted). Gives up the cells each lane no longer needs
        and copies a shared prefix already in an earlier lane's cache.

        With a stream per lane llama.cpp refuses a row of several sequences (``-kvu`` in its
        words), so a prefix two lanes still have to evaluate is either evaluated in each (a
        short one: both lanes' rows go in one decode anyway) or, from ``SHARED_PREFIX_COPY``
        tokens, evaluated in the earlier lane and copied before the later lane's own rows (a
        decode more, fewer rows)."""
        keeps = []
        for lane, target in zip(lanes, targets, strict=True):
            keep = self.cached_tokens(lane, target)
            self._release_cells(lane.seq_id, keep)
            lane.tokens = target[:keep]
            keeps.append(keep)
        own: list[list[_Row]] = []
        deferred: list[tuple[int, int, int]] = []
        cells: list[int] = []  # per lane: its cells (kept or copied) end there
        for index, (lane, target) in enumerate(zip(lanes, targets, strict=True)):
            start = keeps[index]
            donor = _best_donor(targets[:index], target, start)
            if donor is not None:
                source, shared = donor
                cached = min(shared, cells[source])
                if cached > start:  # in the donor's cells already: copy them now
                    own.append(self._copy_prefix(lane, lanes[source], target, cached))
                    cells.append(cached)
                    continue
                donor_waits = any(source == waiting for waiting, _, _ in deferred)
                if shared - start >= SHARED_PREFIX_COPY and not donor_waits:
                    deferred.append((index, source, shared))
                    own.append([])
                    cells.append(start)
                    continue
            own.append([_Row(target[p], p, lane.seq_id) for p in range(start, len(target) - 1)])
            cells.append(start)
        finals = [_Row(target[-1], len(target) - 1, lane.seq_id, logits=True)
                  for lane, target in zip(lanes, targets, strict=True)]
        return own, deferred, finals

    def _decode_rows(
        self, rows: Sequence[_Row], lanes: dict[int, tuple[LaneState, list[int]]]
    ) -> None:
        """One decode of ``rows`` (at most ``n_batch``); then each lane's ``tokens`` reach
        the last position decoded for it, and ``logits(i)`` is the ``i``-th row wanting them."""
        self._output_rows = [i for i, row in enumerate(rows) if row.logits]
        for i, row in enumerate(rows):
            self._batch_tokens[i] = row.token
            self._batch_positions[i] = row.position
            self._batch_wants_logits[i] = row.logits
            self._batch_seq_slots[i][0] = row.seq_id
        self._batch.n_tokens = len(rows)
        self._decode()
        reached: dict[int, int] = {}
        for row in rows:
            reached[row.seq_id] = row.position + 1
        for seq_id, length in reached.items():
            lane, target = lanes[seq_id]
            lane.tokens = target[:length]

    @property
    def free_lanes(self) -> int:
        """Lanes that ``open_lane`` can still give."""
        with self._lock:
            return len(self._free_seq_ids)

    def step(self, lanes: Sequence[LaneState], tokens: Sequence[int]) -> None:
        """Append one token per lane (each its own) in ONE decode; logits(i) is lane i's.

        The rows go to llama.cpp in ascending stream order (``step_rows``): with a stream per
        lane it computes a batch as one graph per run of consecutive streams, so lanes given
        in the order their requests came (streams 2, 3, 0, 1) cost a graph per run, each
        reading every weight again (docs/performance.md, "A graph per run of streams")."""
        if len(lanes) > self.n_batch:  # llama.cpp aborts the process past n_batch tokens
            raise ModelError("More lanes than fit in one batch.")
        if len(tokens) != len(lanes):
            raise ValueError("A step takes one token per lane.")
        order = step_rows([lane.seq_id for lane in lanes])
        for row, i in enumerate(order):
            lane = lanes[i]
            self._batch_tokens[row] = tokens[i]
            self._batch_positions[row] = len(lane.tokens)
            self._batch_seq_slots[row][0] = lane.seq_id
            lane.tokens.append(tokens[i])
        self._batch_wants_logits[: len(lanes)] = 1
        self._batch.n_tokens = len(lanes)
        self._output_rows = _inverse(order)
        self._decode()

    @property
    def last_decode_streams(self) -> tuple[int, ...]:
        """The stream of each row of the last decode, in the order llama.cpp got them (a
        step's in ascending order, ``step_rows``); read from the batch, so a step pays
        nothing for it."""
        return tuple(self._batch_seq_slots[row][0] for row in range(self._batch.n_tokens))

    def _decode(self) -> None:
        self.decodes += 1
        status = llama_cpp.llama_decode(self.handle, self._batch)
        if status == 1:
            raise PromptTooLongError(
                "The conversation no longer fits in the context; start a new one."
            )
        if status != 0:
            raise ModelError(f"llama.cpp failed to decode a batch (status {status}).")

    def logits(self, index: int) -> np.ndarray:
        """Zero-copy float32 view of the logits of the ``index``-th output of the last decode.

        The view is overwritten by the next decode: copy it to keep it. Views are cached by
        address: building one with ``np.ctypeslib.as_array`` costs ~60 us, a lookup ~1 us, and
        an address llama.cpp returns is its logits buffer now, whatever was there before.
        """
        rows = self._output_rows
        if rows is not None:
            if not 0 <= index < len(rows):
                raise ModelError(f"llama.cpp has no logits for output {index}.")
            index = rows[index]
        pointer = llama_cpp.llama_get_logits_ith(self.handle, index)
        if not pointer:  # (a NULL pointer is false)
            raise ModelError(f"llama.cpp has no logits for output {index}.")
        address = ctypes.addressof(pointer.contents)  # (a tenth of ctypes.cast's time)
        view = self._logit_views.get(address)
        if view is None:
            if len(self._logit_views) >= 4 * self.max_lanes:
                self._logit_views.clear()
            view = np.ctypeslib.as_array(pointer, shape=(self.vocab_size,))
            self._logit_views[address] = view
        return view

    def close(self) -> None:
        """Free the context and its batch."""
        if getattr(self, "handle", None):
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


def step_rows(seq_ids: Sequence[int]) -> list[int]:
    """The order of a step's rows: the lanes' indices by ascending stream.

    llama.cpp (0.3.36, ``split_equal`` with a stream per sequence) puts rows in one ubatch
    only while each row's stream is the previous row's plus one; any other order, or a gap,
    starts another ubatch: one more graph computed, every weight read again. Under staggered
    load, lanes listed as their requests came were in 3 or 4 ubatches at most steps of 4
    streams. Sorted, a step of consecutive streams is one ubatch; a gap left by a lane that
    ended still splits it until a new lane fills the gap (``open_lanes`` fills gaps first,
    ``stream_choice``)."""
    return sorted(range(len(seq_ids)), key=seq_ids.__getitem__)


def stream_runs(seq_ids: Sequence[int]) -> int:
    """How many ubatches llama.cpp splits one step's rows into, in this order (see
    ``step_rows``): one, plus one at each row whose stream is not the previous one's plus
    one."""
    if not seq_ids:
        return 0
    pairs = zip(seq_ids[:-1], seq_ids[1:], strict=True)
    return 1 + sum(1 for before, after in pairs if after != before + 1)


def _inverse(order: list[int]) -> list[int] | None:
    """Where each lane's row went (``order[row]`` is the lane); None when nothing moved."""
    if all(lane == row for row, lane in enumerate(order)):
        return None
    rows = [0] * len(order)
    for row, lane in enumerate(order):
        rows[lane] = row
    return rows


def _chunks(rows_per_lane: list[list[_Row]], size: int) -> list[list[_Row]]:
    """Each lane's rows in decodes of at most ``size`` rows (no empty one)."""
    return [rows[i : i + size] for rows in rows_per_lane for i in range(0, len(rows), size)]


def _merge_small(decodes: list[list[_Row]], most: int) -> list[list[_Row]]:
    """Consecutive decodes joined while together they hold at most ``most`` rows."""
    merged = [decodes[0]]
    for rows in decodes[1:]:
        if len(merged[-1]) + len(rows) <= most:
            merged[-1] = merged[-1] + rows
        else:
            merged.append(rows)
    return merged


def _best_donor(
    earlier: Sequence[Sequence[int]], target: list[int], keep: int
) -> tuple[int, int] | None:
    """The earlier target sharing the longest prefix with ``target`` beyond ``keep`` (its
    index and the shared length), if any; neither target's last token is shared (each
    lane's last token is its own row of the final decode)."""
    best: tuple[int, int] | None = None
    for index, other in enumerate(earlier):
        shared = min(common_prefix(other, target), len(other) - 1, len(target) - 1)
        if shared > keep and (best is None or shared > best[1]):
            best = (index, shared)
    return best
