"""A float32 copy of a quantized GGUF, for comparing engines without quantized arithmetic.

Every tensor is dequantized with gguf's own decoder (llama.cpp's reference for the formats), so
both engines load exactly the values the quantized file stands for, and neither quantizes
activations: llama.cpp's CPU kernels multiply float32 weights by float32 activations.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize


def dequantized_copy(source: Path, target: Path) -> Path:
    """Write `source` with every tensor as F32 to `target` (once: an existing target is reused)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(partial, arch=reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        kind, sub_type = field.types[0], (field.types[-1] if len(field.types) > 1 else None)
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, kind, sub_type=sub_type)
    tensors = [(t.name, dequantize(t.data, t.tensor_type).astype(np.float32)) for t in reader.tensors]
    for name, data in tensors:
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in tensors:
        writer.write_tensor_data(data)
    writer.close()
    partial.replace(target)
    return target
