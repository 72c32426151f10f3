"""Vision-language models on MLX through mlx-vlm (the `[vision]` extra), batched with text requests.

mlx-vlm loads the model and its processor; its language model then runs in the same mlx-lm BatchGenerator
as a text LLM's (batching.py), behind mlx-lm's calling convention. A request with images is templated with
typed content, tokenized by the processor (one placeholder id per image token), embedded once (vision tower
+ projector), and prefilled up to its last image from those embeddings into a KV cache on the model
thread; the rest of the prompt and the decoding join the batch like any request. Its prompt-cache key
names each image by its hash (vision_cache.py), so the same image reuses its prefix and another never does.

Language models whose positions or attention depend on the images (M-RoPE in Qwen-VL, Gemma 3's
bidirectional image attention, cross-attention) need inputs this path does not carry: refused at load.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from radis_mlx.engines.mlx.batching import BatchScheduler, Job
from radis_mlx.engines.mlx.llm import MlxLlmEngine
from radis_mlx.engines.mlx.prompt import GuidanceTokenizer, keep_leading_space, render_text, trained_context
from radis_mlx.engines.mlx.vision_cache import image_cache_key
from radis_mlx.errors import InvalidRequestError, ModelLoadError, RadisError, UnsupportedModelError
from radis_mlx.generation.chat_template import template_messages
from radis_mlx.generation.types import GenerationRequest, ImageInput, request_images
from radis_mlx.store.vision import has_vision_tower

log = logging.getLogger(__name__)

# mlx-vlm model types whose embeddings come with position or attention inputs for the language model.
NEEDS_EXTRA_INPUTS = frozenset(
    [
        "cohere_compass",
        "falcon_ocr",
        "florence2",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gemma4_unified",
        "glm5_next",
        "granite4_vision",
        "minicpmv4_7",
        "minimax_m3_vl",
        "mllama",
        "moondream2",
        "moondream3",
        "nemotron_parse",
        "paligemma",
        "qwen2_5_vl",
        "qwen2_vl",
        "qwen3_5",
        "qwen3_omni_moe",
        "qwen3_vl",
        "qwen3_vl_moe",
        "zaya1_vl",
    ]
)
PREFILL_STEP = 512
_PROCESSOR_INPUTS = ("input_ids", "pixel_values", "attention_mask")


def _image_part(image: ImageInput) -> dict[str, Any]:
    return {"type": "image"}  # where the template writes the model's image token


class LanguageModel:
    """An mlx-vlm language model behind mlx-lm's model calling convention (what BatchGenerator calls)."""

    def __init__(self, language: Any) -> None:
        self.language = language

    @property
    def layers(self) -> Any:
        return self.language.layers

    def __call__(self, inputs: Any, cache: Any = None, input_embeddings: Any = None, **kwargs: Any) -> Any:
        return self.language(inputs, inputs_embeds=input_embeddings, cache=cache).logits


class MlxVlmEngine(MlxLlmEngine):
    """mlx-vlm's model and processor on one model thread, its language model in a BatchScheduler."""

    input_modalities = ("text", "image")
    _vlm: Any = None
    _processor: Any = None
    _placeholder = -1

    def _load(self) -> None:
        import mlx.core as mx
        import mlx.utils
        from mlx_lm.utils import load_tokenizer

        if not has_vision_tower(self.path):
            raise ModelLoadError(
                f"{self.path.name} has no vision_config in its config.json: not a vision model"
            )
        try:
            from mlx_vlm.utils import load as load_vlm
        except ImportError as exc:
            raise ModelLoadError(
                f"{self.path.name} is a vision model: serving it on MLX needs mlx-vlm "
                "(pip install 'radis-mlx[vision]')"
            ) from exc
        try:
            self._vlm, self._processor = load_vlm(str(self.path))
            config = self._vlm.config
            self._check_batchable(str(getattr(config, "model_type", "")))
            eos = getattr(config, "eos_token_id", None)
            self._tokenizer = load_tokenizer(self.path, eos_token_ids=eos)
        except RadisError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"mlx-vlm could not load {self.path.name}: {exc}") from exc
        self._placeholder = int(getattr(config, "image_token_index", None) or config.image_token_id)
        self._model = LanguageModel(self._vlm.language_model)
        keep_leading_space(self._tokenizer)
        self._guidance = GuidanceTokenizer(self._tokenizer)
        trained = trained_context(self.path)
        limit = self.info.context_length
        self.info.context_length = min(limit, trained) if limit else trained
        parameters: list[tuple[str, Any]] = mlx.utils.tree_flatten(self._vlm.parameters())  # type: ignore[assignment]
        self.info.size_bytes = sum(v.nbytes for _, v in parameters)
        self.info.details = {"format": "mlx", "vision": str(getattr(config, "model_type", ""))}
        mx.eval(self._vlm.parameters())
        self._scheduler = BatchScheduler(
            self._model, self._tokenizer, prompt_cache_bytes=self.prompt_cache_bytes, score=self._score
        )
        self._thread.stepper = self._scheduler

    def _unload(self) -> None:
        self._vlm = self._processor = None
        super()._unload()

    def _check_batchable(self, model_type: str) -> None:
        language = self._vlm.language_model
        caches = (
            {type(c).__name__ for c in language.make_cache()} if hasattr(language, "make_cache") else set()
        )
        if model_type in NEEDS_EXTRA_INPUTS or hasattr(language, "_rope_deltas") or caches - {"KVCache"}:
            raise UnsupportedModelError(
                f"mlx-vlm's '{model_type}' models need position or attention inputs (M-RoPE, image "
                "attention masks, sliding-window caches) that radis-mlx's batched vision path does not pass "
                "yet; serve its GGUF with an mmproj on llama.cpp instead",
                param="model",
            )

    # Everything below runs on the model thread.

    def _job(self, request: GenerationRequest) -> Job:
        """Typed-content template, the processor's tokens, and for images a KV cache prefilled past them."""
        images = request_images(request)
        if request.messages is None:
            return super()._job(request)
        messages = template_messages(
            request.messages,
            object_arguments=True,
            image_part=lambda _: {"type": "image"},
            typed_content=True,
        )
        text = render_text(self._tokenizer, messages, request, self.chat_template)
        if not images:
            return self._job_for(request, list(self._tokenizer.encode(text, add_special_tokens=False)))
        inputs = self._processed(text, images)
        prompt: list[int] = inputs["input_ids"][0].tolist()
        job = self._job_for(request, prompt)
        job.image_tokens = sum(1 for token in prompt if token == self._placeholder)
        if not job.image_tokens:
            raise InvalidRequestError(
                "the chat template placed none of the images in the prompt", param=images[0].param
            )
        job.cache_key = image_cache_key(prompt, self._placeholder, [image.digest for image in images])
        job.start, job.cached_tokens = self._prefilled(inputs, prompt, job.cache_key)
        return job

    def _processed(self, text: str, images: list[ImageInput]) -> dict[str, Any]:
        """The processor's inputs for the prompt text and its images (PIL, decoded from checked bytes)."""
        from mlx_vlm.utils import prepare_inputs
        from PIL import Image

        pictures = []
        for image in images:
            with Image.open(io.BytesIO(image.data)) as picture:
                pictures.append(picture.convert("RGB"))
        try:
            return dict(
                prepare_inputs(
                    self._processor,
                    images=pictures,
                    prompts=[text],
                    image_token_index=self._placeholder,
                    add_special_tokens=False,
                )
            )
        except Exception as exc:  # e.g. the text names more image tokens than images were sent
            raise InvalidRequestError(
                f"the model's processor rejected the images: {exc}", param=images[0].param
            ) from exc

    def _prefilled(
        self, inputs: dict[str, Any], prompt: list[int], key: list[int]
    ) -> tuple[tuple[list[Any], int], int]:
        """((a KV cache holding the prompt up to its last image, its length), the tokens of it that came from
        the prompt cache): the longest cached prefix of `key`, then the rest of the images' part prefilled
        from the model's embeddings (vision tower + projector)."""
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache

        assert self._scheduler is not None
        last = max(i for i, token in enumerate(prompt) if token == self._placeholder)
        end = min(last + 1, len(prompt) - 1)  # at least one token is left for the batch to sample from
        cache, cached = self._scheduler.prompt_cache.fetch(key)
        if cache is not None and cached >= end:
            return (cache, cached), cached
        if cache is None:
            cache, cached = make_prompt_cache(self._model), 0
        reused = cached
        extras = {k: v for k, v in inputs.items() if k not in _PROCESSOR_INPUTS}
        ids = inputs["input_ids"]
        features = self._vlm.get_input_embeddings(
            ids, inputs["pixel_values"], mask=inputs.get("attention_mask"), **extras
        )
        embeddings = features.inputs_embeds
        for start in range(cached, end, PREFILL_STEP):
            stop = min(start + PREFILL_STEP, end)
            self._model(ids[:, start:stop], cache=cache, input_embeddings=embeddings[:, start:stop])
            mx.eval([c.state for c in cache])
        return (cache, end), reused
