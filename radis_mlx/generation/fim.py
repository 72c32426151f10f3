"""Fill-in-the-middle: a FIM template (`{prefix}`/`{suffix}` placeholders) rendered into a plain prompt.

The template is the entry's `fim_template` or the one found in the model's vocabulary
(store/templates.py); the rendered prompt is an ordinary completion prompt, so every engine serves it
(both parse special-token text in a prompt as the special token: HF tokenizers match added tokens,
llama.cpp's /completion tokenizes with parse_special).
"""

from __future__ import annotations

import re

from radis_mlx.errors import InvalidRequestError

_PLACEHOLDER = re.compile(r"\{(prefix|suffix)\}")


def render_fim(template: str, prefix: str, suffix: str) -> str:
    """The template with its placeholders filled in one pass (braces in the code are left alone)."""
    values = {"prefix": prefix, "suffix": suffix}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def fill_in_middle(template: str | None, prompt: str | list[int] | None, suffix: str) -> str:
    """The prompt and suffix rendered with the model's fill-in-the-middle template."""
    if template is None:
        raise InvalidRequestError(
            "suffix (fill-in-the-middle) is not supported by this model: its vocabulary has no "
            "fill-in-the-middle tokens and models.toml sets no fim_template for it",
            param="suffix",
        )
    if not isinstance(prompt, str):
        raise InvalidRequestError(
            "suffix (fill-in-the-middle) needs a text prompt, not token ids", param="suffix"
        )
    return render_fim(template, prompt, suffix)
