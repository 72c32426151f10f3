"""A BERT encoder in MLX, with the parameter names of Hugging Face's BertModel checkpoints.

Small on purpose: the encoder stack, so a sentence-transformers folder's model.safetensors loads into
it as it is, and BertForSequenceClassification's head (pooler + classifier) for cross-encoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from radis_mlx.errors import UnsupportedModelError

_ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "relu": nn.relu,
}


@dataclass
class BertConfig:
    """The fields of a BERT config.json the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BertConfig:
        """Read config.json; refuse what this module does not implement."""
        if raw.get("model_type") != "bert":
            raise UnsupportedModelError(f"model_type '{raw.get('model_type')}' is not BERT", param="model")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModelError("only absolute position embeddings are supported", param="model")
        if raw.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise UnsupportedModelError(f"activation '{raw['hidden_act']}' is not supported", param="model")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names and v is not None})


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array | None = None) -> mx.array:
        positions = mx.arange(input_ids.shape[1])
        # One segment (embedders): every token has type 0, so its embedding is a single row.
        segments = (
            self.token_type_embeddings.weight[0]
            if token_type_ids is None
            else self.token_type_embeddings(token_type_ids)
        )
        embedded = self.word_embeddings(input_ids) + self.position_embeddings(positions) + segments
        return self.LayerNorm(embedded)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        batch, length, width = x.shape

        def split(t: mx.array) -> mx.array:
            return t.reshape(batch, length, self.heads, -1).transpose(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scale = 1.0 / math.sqrt(width // self.heads)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
        return out.transpose(0, 2, 1, 3).reshape(batch, length, width)


class BertDenseNorm(nn.Module):
    """dense → residual add → LayerNorm: BERT's 'output' block after attention and after the MLP."""

    def __init__(self, width_in: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertDenseNorm(config.hidden_size, config)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        return self.activation(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertDenseNorm(config.intermediate_size, config)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        attended = self.attention(x, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = [BertLayer(config) for _ in range(config.num_hidden_layers)]


class BertModel(nn.Module):
    """Token ids and attention mask in, last hidden state out."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def __call__(
        self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array | None = None
    ) -> mx.array:
        """Hidden states (batch, length, hidden) for padded ids; mask is 1 for real tokens."""
        x = self.embeddings(input_ids, token_type_ids)
        # Additive mask over keys: padded positions get a large negative score.
        keys = mx.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9).astype(x.dtype)
        for layer in self.encoder.layer:
            x = layer(x, keys)
        return x

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint names → ours: drop the pooler and buffers, strip a 'bert.' prefix."""
        cleaned = {}
        for name, value in weights.items():
            name = name.removeprefix("bert.")
            if name.startswith(("pooler.", "cls.")) or name.endswith("position_ids"):
                continue
            # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
            name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
                "LayerNorm.beta", "LayerNorm.bias"
            )
            cleaned[name] = value
        return cleaned


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def __call__(self, first_token: mx.array) -> mx.array:
        return mx.tanh(self.dense(first_token))


class BertForSequenceClassification(nn.Module):
    """A cross-encoder: classifier(tanh(pooler(h[CLS]))) over `[CLS] query [SEP] document [SEP]`."""

    def __init__(self, config: BertConfig, labels: int) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.pooler = BertPooler(config)
        self.classifier = nn.Linear(config.hidden_size, labels)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        """Logits (batch, labels) for padded pairs with their segment ids."""
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.pooler(hidden[:, 0]))

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """transformers' names → ours: the encoder under `bert.`, its pooler beside the classifier."""
        cleaned = {}
        for name, value in weights.items():
            if name.startswith("bert.pooler."):
                cleaned[name.removeprefix("bert.")] = value
            elif name.startswith("bert."):
                cleaned.update({f"bert.{k}": v for k, v in BertModel.sanitize({name: value}).items()})
            elif name.startswith("classifier."):
                cleaned[name] = value
        return cleaned
