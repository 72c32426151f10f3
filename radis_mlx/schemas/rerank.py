"""POST /v1/rerank (also /rerank, /v1/reranking): the Jina / Cohere shape llama-server and vLLM serve."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from radis_mlx.errors import InvalidRequestError
from radis_mlx.generation.types import RerankResult
from radis_mlx.schemas.common import TtlSeconds


class RerankDocument(Struct):
    text: str


class RerankRequest(Struct, kw_only=True):
    model: str
    # Optional here so a missing query or documents is a 400 naming the field, like every input error.
    query: str | None = None
    # Strings, or {"text": ...} objects (Cohere, Jina); llama-server also names them `texts`.
    documents: list[str | RerankDocument] | None = None
    texts: list[str] | None = None
    top_n: Annotated[int, Meta(ge=1)] | None = None
    return_documents: bool = False
    # Extension (Hugging Face TEI's name): the classifier's raw logit instead of its sigmoid.
    raw_scores: bool = False
    # Extension (LM Studio): seconds this model may stay loaded while idle, from this request on.
    ttl: TtlSeconds | None = None

    def to_inputs(self, max_inputs: int) -> tuple[str, list[str]]:
        """The query and the documents' texts; 400 for a missing/empty query, no documents or too many."""
        if not self.query:
            raise InvalidRequestError("query must be a non-empty string", param="query")
        items = self.documents if self.documents is not None else self.texts
        if not items:
            raise InvalidRequestError("documents must be a non-empty list", param="documents")
        if len(items) > max_inputs:
            raise InvalidRequestError(
                f"documents has {len(items)} entries; this model takes at most {max_inputs} per request",
                param="documents",
            )
        return self.query, [d if isinstance(d, str) else d.text for d in items]

    def to_response(self, result: RerankResult, documents: list[str], response_id: str) -> RerankResponse:
        """Results sorted by relevance (ties keep the documents' order), cut to top_n."""
        scores = result.scores if self.raw_scores else [_sigmoid(s) for s in result.scores]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: self.top_n]
        results = [
            RerankItem(i, scores[i], RerankDocument(documents[i]) if self.return_documents else UNSET)
            for i in order
        ]
        usage = RerankUsage(result.prompt_tokens, result.prompt_tokens)
        return RerankResponse(id=response_id, model=self.model, results=results, usage=usage)


def _sigmoid(logit: float) -> float:
    # A cross-encoder's one logit as a probability, as sentence-transformers' CrossEncoder gives it.
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))


class RerankItem(Struct, omit_defaults=True):
    index: int
    relevance_score: float
    document: RerankDocument | UnsetType = UNSET


class RerankUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(Struct, kw_only=True):
    id: str
    object: Literal["list"] = "list"
    model: str
    results: list[RerankItem] = field(default_factory=list)
    usage: RerankUsage
