"""What every engine shares for encoder models (sentence embedders and cross-encoder rerankers).

Both engines serve an encoder the same way: the same tokenizer (the folder's tokenizer.json, or one
rebuilt from a BERT GGUF's vocabulary), the same special tokens, the same truncation and the same
token counts, so the vectors and scores agree across engines and `usage` is identical.
"""
