"""The tf-keras decoder LM (teacher and student are the same builder at different sizes).

Pre-norm GPT-style blocks built from pieces tfmot can wrap: `Embedding` (tokens),
`PositionEmbedding` (learned positions), `LayerNormalization`, `Dense` projections (q, k, v, o,
ff1, ff2, the untied head) and `CausalSelfAttention` (weightless). The model takes int32 ids
`[batch, context]` and returns logits `[batch, context, vocab]`; training always uses full
windows of `context` tokens, so the position table is added whole.

Layer names are fixed (`tok_emb`, `pos_emb`, `b{i}_ln1`, `b{i}_q`, ..., `final_ln`, `lm_head`):
`export.py` reads the weights by name to build the KV-cache signatures.
"""

from __future__ import annotations

import math

from .._tf import keras, tf, tfmot
from ..students import PositionEmbedding
from .config import DecoderConfig


@keras.utils.register_keras_serializable("tflite_compress_lm")
class CausalSelfAttention(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Multi-head causal attention over projected `[q, k, v]` (batch, length, heads * head_dim)."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def call(self, inputs):
        q, k, v = inputs
        length, dim = int(q.shape[1]), int(q.shape[2])
        hd = dim // self.num_heads

        def split(t):
            return tf.transpose(tf.reshape(t, [-1, length, self.num_heads, hd]), [0, 2, 1, 3])

        q, k, v = split(q), split(k), split(v)
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(hd))
        causal = tf.linalg.band_part(tf.ones([length, length]), -1, 0)
        scores = scores + (1.0 - causal) * -1e9
        ctx = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [-1, length, dim])

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return dict(super().get_config(), num_heads=self.num_heads)


def build_decoder(config: DecoderConfig, vocab_size: int, name: str = "decoder", seed: int = 0,
                  head_bias=None) -> "keras.Model":
    """A fresh decoder LM: ids [batch, context] -> logits [batch, context, vocab_size].

    `head_bias` (e.g. `unigram_log_probs` of the train stream) starts the output bias at the
    unigram log-probabilities, so training does not spend its first few hundred steps learning
    token frequencies (measured on val: 114.9 against 129.3 perplexity after 390 steps)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    ids = keras.Input((config.context,), dtype="int32", name="token_ids")
    x = L.Embedding(vocab_size, config.dim, name="tok_emb",
                    embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02))(ids)
    x = PositionEmbedding(config.context, name="pos_emb")(x)
    for i in range(config.layers):
        h = L.LayerNormalization(name=f"b{i}_ln1")(x)
        q, k, v = (L.Dense(config.dim, name=f"b{i}_{p}")(h) for p in "qkv")
        a = CausalSelfAttention(config.heads, name=f"b{i}_attn")([q, k, v])
        x = L.Add(name=f"b{i}_res1")([x, L.Dense(config.dim, name=f"b{i}_o")(a)])
        h = L.LayerNormalization(name=f"b{i}_ln2")(x)
        h = L.Dense(config.ff_dim, activation="relu", name=f"b{i}_ff1")(h)
        x = L.Add(name=f"b{i}_res2")([x, L.Dense(config.dim, name=f"b{i}_ff2")(h)])
    x = L.LayerNormalization(name="final_ln")(x)
    head = L.Dense(vocab_size, name="lm_head")
    logits = head(x)
    if head_bias is not None:
        head.bias.assign(tf.constant(head_bias, tf.float32))
    return keras.Model(ids, logits, name=name)


def unigram_log_probs(ids, vocab_size: int):
    """log of the add-one unigram probabilities of a token stream (float32 [vocab_size]; the bigram
    reference row interpolates with the same `runtime.lm.unigram_probs`)."""
    import numpy as np

    from ..runtime.lm import unigram_probs

    return np.log(unigram_probs(ids, vocab_size)).astype(np.float32)


def count_params(model) -> int:
    return int(sum(int(tf.size(w)) for w in model.weights))


def custom_objects() -> dict:
    return {"CausalSelfAttention": CausalSelfAttention, "PositionEmbedding": PositionEmbedding}
