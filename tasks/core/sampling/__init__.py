"""Massive sampling: n completions per problem from a saved causal LM, into sample-store rows.

Modules (no import cycle: each imports only those above it):

* :mod:`~tasks.core.sampling.params` - :class:`SamplingParams` (everything that changes the
  samples) and :class:`SampleRequest` (one problem's prompt); no torch.
* :mod:`~tasks.core.sampling.backend` - the :class:`SamplingBackend` protocol, :class:`Generated`,
  :class:`SamplingError` and the model-dir/prompt checks every backend shares.
* :mod:`~tasks.core.sampling.hf` - :class:`HFBatchedBackend` (transformers ``generate``).
* :mod:`~tasks.core.sampling.vllm` - :class:`VLLMBackend`, optional (vLLM imported on construction).
* :mod:`~tasks.core.sampling.shard` - :func:`make_backend` (:func:`backend_key`) and :func:`sample_shard` (one shard's
  rows in the store schema).

The shard loop production runs (skip a finished shard, sample, write) is the sample stage's
:func:`tasks.core.stages.sample.run_shard`. Importing this package loads neither torch nor vLLM.
"""

from tasks.core.sampling.backend import (
    FinishReason,
    Generated,
    Progress,
    SamplingBackend,
    SamplingError,
    check_prompt_fits,
    load_checked_tokenizer,
)
from tasks.core.sampling.hf import HFBatchedBackend
from tasks.core.sampling.params import SampleRequest, SamplingParams
from tasks.core.sampling.shard import backend_key, make_backend, sample_shard

__all__ = [
    "FinishReason",
    "Generated",
    "HFBatchedBackend",
    "Progress",
    "SampleRequest",
    "SamplingBackend",
    "SamplingError",
    "SamplingParams",
    "backend_key",
    "check_prompt_fits",
    "load_checked_tokenizer",
    "make_backend",
    "sample_shard",
]
