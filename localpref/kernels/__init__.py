"""Numerical kernels: log-softmax, Amulet (loop and exact form), contrastive, PAD, samplers.

Everything here runs once per generated token, so it is compiled with Numba
(``@njit(cache=True)``), takes plain NumPy arrays and scalars, and never loops over the
vocabulary in Python. docs/design.md gives the formulas; each kernel's docstring
restates its own and names its source.

Modules
-------
* ``primitives``: the numeric building blocks the kernels inline (masking, eight-way max and
  argmax, the vectorisable exp, normalisation in place).
* ``logprobs``: log-softmax, and the KL divergence of two log-distributions.
* ``contrast``: the contrast family ``z_pref + k (z_pref - z_base)``: Amulet's exact form and
  its loop, contrastive decoding.
* ``topk``: top-k selection (PAD's candidates, the top-k sampler). ``pad``: PAD's scores.
* ``sampling``: greedy, the samplers, the repetition penalty.
* ``controls``: what keeps steering fluent: the plausibility (tau) mask, the per-token KL
  budget, the end-token rule, the per-token statistics of the trace.
* ``arguments``: the allocating wrappers' argument checks and ``AllMaskedError``.
* ``preload``: ``warmup``, which loads the decoding kernels when a model loads.

This package re-exports the names below (``from localpref.kernels import sample``);
``controls`` is imported as a module (``from localpref.kernels import controls``).

Conventions
-----------
* **Inputs.** Logits are 1-D arrays of length V (float32 zero-copy views of llama.cpp's logits,
  or float64). Kernels never modify their inputs (except ``apply_repetition_penalty``, which
  works in place by design).
* **Masking.** A token whose logit is not finite (``-inf`` from a grammar mask, ``NaN``, or
  ``+inf``, which cannot be normalised) in *any* input lane is masked: it is ``-inf`` in every
  output and is never chosen. It is masked explicitly before any arithmetic, so ``B = -k < 0``
  can never turn ``-inf`` into ``+inf`` and no kernel produces ``NaN``.
* **Precision.** Combinations, maxima, sums and logarithms are computed in float64, whatever
  the input dtype. Outputs are float64.
* **Buffers.** Hot-path kernels end in ``_into`` and write into buffers that the caller
  allocates once per generation (``out``: float64, length V; for PAD an int64 and a float64
  buffer of length ``candidates``). They return something small: the number of unmasked
  tokens (or candidates), or for ``contrast_logits_into`` the maximum. The plain-named
  functions ``log_softmax``, ``amulet_logprobs``, ``contrastive_logprobs``,
  ``amulet_loop_logprobs`` and ``pad_scores`` are Python wrappers that allocate and check
  their arguments.
* **Everything masked.** ``*_into`` kernels return ``0`` (``contrast_logits_into``: ``-inf``)
  and leave ``out`` all ``-inf``; ``greedy``, ``sample`` and ``contrast_argmax`` return
  ``-1``; the allocating wrappers raise :class:`AllMaskedError` (a ``ValueError``).
* **Ties** are always broken toward the lower token id (argmax, top-k, top-p, PAD candidates).
* **Randomness** lives in Python: ``sample`` takes a uniform ``u`` in [0, 1) drawn by the caller
  from a seeded ``numpy.random.Generator``, and picks by inverse CDF over the surviving tokens
  walked in ascending token-id order (so the same ``u`` gives the same token whatever filters
  were applied, as long as that token survived them).

The hot path of a generation with Amulet is ``k = amulet_contrast(alpha, lam, eta, T)`` once,
then per token either ``contrast_argmax(z_pref, z_base, k)`` (greedy: one pass, no
exponentials), or ``contrast_logits_into(z_pref, z_base, k, out)`` then
``sample(out, ...)`` (sampling normalises by itself), or ``contrast_logprobs_into`` when the
log-probabilities themselves are wanted. Contrastive decoding is the same with ``k = ratio``.
PAD is ``pad_scores_into`` then ``greedy`` or ``sample`` over the K scores, mapping the index
back through the candidate ids.

Performance notes
-----------------
* A loop meant to vectorise is a plain ``for i in range(n)`` over whole arrays or over slices
  handed to a helper (Numba's negative-index check on ``a[i + c]`` defeats LLVM's vectoriser);
  reductions that must vectorise carry the fast-math flags ``reassoc, nsz, contract``
  (``primitives.FASTMATH``) and never ``nnan`` / ``ninf``, which would let LLVM fold away the
  masking tests.
* Max and argmax take eight values at a time (LLVM does not vectorise a floating-point max
  reduction without no-NaN flags, and a compare chain over V is latency-bound).
* exp: ``primitives.exp_nonpos`` is a branch-free exp(x) for x <= 0 (Cody-Waite range
  reduction, degree-12 Taylor polynomial, exponent assembled from bits) that LLVM vectorises;
  relative error about 2e-16, exactly 0 below x = -708 and for ``-inf``. The exponential pass
  is the dominant cost of every normalised kernel (about 1 ns a token on the 2-core machine).
* ``parallel=True`` was measured and is not used: at V = 49k a two-thread exponential pass
  saves about 20 us when both cores are idle, but a worker thread that is descheduled (by
  llama.cpp's own threads or anything else) costs milliseconds.
"""

from localpref.kernels.arguments import AllMaskedError
from localpref.kernels.contrast import (
    amulet_contrast,
    amulet_logprobs,
    amulet_loop_into,
    amulet_loop_logprobs,
    contrast_argmax,
    contrast_logits_into,
    contrast_logprobs_into,
    contrastive_logprobs,
)
from localpref.kernels.logprobs import kl_divergence, log_softmax, log_softmax_into
from localpref.kernels.pad import pad_scores, pad_scores_into
from localpref.kernels.preload import warmup
from localpref.kernels.sampling import apply_repetition_penalty, greedy, sample

__all__ = [
    "AllMaskedError",
    "amulet_contrast",
    "amulet_logprobs",
    "amulet_loop_into",
    "amulet_loop_logprobs",
    "apply_repetition_penalty",
    "contrast_argmax",
    "contrast_logits_into",
    "contrast_logprobs_into",
    "contrastive_logprobs",
    "greedy",
    "kl_divergence",
    "log_softmax",
    "log_softmax_into",
    "pad_scores",
    "pad_scores_into",
    "sample",
    "warmup",
]
