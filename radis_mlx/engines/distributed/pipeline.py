"""Pipeline parallelism for mlx-lm's Llama, which ships tensor parallelism (`shard`) only.

The split is mlx-lm's own PipelineMixin; the forward pass is the one mlx-lm gives Qwen2 (the same
architecture here): receive the hidden state from the next rank, run this rank's layers, send it on,
then all_gather it so every rank computes the same logits. Rank 0 holds the last layers.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx_lm.models import llama
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.pipeline import PipelineMixin


class PipelineLlamaModel(llama.LlamaModel, PipelineMixin):
    """LlamaModel whose layers can be split across a pipeline group."""

    def __init__(self, args: llama.ModelArgs) -> None:
        llama.LlamaModel.__init__(self, args)
        PipelineMixin.__init__(self)  # not reached through super(): nn.Module ends LlamaModel's chain

    def __call__(
        self, inputs: mx.array, cache: Any = None, input_embeddings: mx.array | None = None
    ) -> mx.array:
        if self.swa_idx is not None:
            raise ValueError("pipeline parallelism does not support sliding-window Llama layers")
        h = input_embeddings if input_embeddings is not None else self.embed_tokens(inputs)
        rank, size = self.pipeline_rank, self.pipeline_size
        if cache is None:
            cache = [None] * len(self.pipeline_layers)
        mask = create_attention_mask(h, cache[0])
        if rank < size - 1:
            # The previous stage sends what its layers output, which can be wider than the embeddings
            # (float16 in, float32 out for GGUF conversions). A layer call builds a graph that is never
            # evaluated: only its dtype is read.
            wire = self.pipeline_layers[0](h, None, cache=None).dtype
            h = mx.distributed.recv(h.shape, wire, rank + 1)
        for layer, layer_cache in zip(self.pipeline_layers, cache, strict=True):
            h = layer(h, mask, cache=layer_cache)
        if rank != 0:
            h = mx.distributed.send(h, (rank - 1) % size)
            if cache[-1] is not None:
                cache[-1].keys = mx.depends(cache[-1].keys, h)
        if size > 1:
            h = mx.distributed.all_gather(h)[: h.shape[0]]
        return self.norm(h)


class PipelineLlama(llama.Model):
    """llama.Model over PipelineLlamaModel; its caches cover this rank's layers only."""

    def __init__(self, args: llama.ModelArgs) -> None:
        super().__init__(args)
        self.model = PipelineLlamaModel(args)

    @property
    def layers(self) -> list[Any]:
        return list(self.model.pipeline_layers)
