"""Language models for phones: a Keras decoder LM distilled, pruned and quantized into a LiteRT
file with a KV cache (`prefill`, `decode`, `extend` and `score` signatures, builtin ops only).

Modules, one per stage: `corpus` (Chit-Chat or your own text, split by conversation),
`tokenizer` (WordPiece with an end-of-turn token; pure Python), `config` (`LMRecipe`),
`models` (the tf-keras decoder used as teacher and student), `distill` (CE and KD training),
`export` (the KV-cache `.tflite`), `pipeline` (the stages). Importing this package, `corpus`,
`tokenizer` or `config` never imports TensorFlow; the harness side is `tflite_compress.runtime.lm`.
"""
