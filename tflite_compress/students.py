"""Student model builders (tf-keras, so that tfmot can wrap them) and the layers they need.

Three families, each configurable by width and depth (see `StudentConfig`):
- "bag": embedding -> global average pool -> MLP;
- "cnn": embedding -> parallel Conv1D stacks of several widths -> global max pool -> MLP;
- "transformer": embedding + learned positions -> encoder blocks (pre- or post-norm) -> mean pool -> MLP.

Every family takes int32 token ids `token_ids` and returns float logits, and its last hidden
layer is named "hidden" (the representation feature distillation matches).

The transformer is built from pieces that quantize cleanly to full INT8: Dense projections
(2-D kernels), `DotProductAttention` (a weightless batched-matmul layer), `PositionEmbedding`,
`Add`, `LayerNormalization` and a GELU `Activation`. No padding mask: a mask would add a
float `-inf` bias, and the model learns to ignore id 0 (its embedding and position) instead.
`QuantizableMultiHeadAttention` (Keras MHA callable as one-input layer) exists for user models
and is quantized by `qat.MultiHeadAttentionQuantizeConfig`.

Built for integer kernels (XNNPACK on phones' CPUs; `StudentConfig` fields): `ffn_activation`
"relu"/"relu2" instead of GELU (int8 GELU stays outside XNNPACK), `norm="tanh"` (`DynamicTanh`:
MUL/TANH/MUL/ADD, all int8 in XNNPACK, where LayerNormalization's RSQRT and SQUARED_DIFFERENCE
are not) and `static_shapes` (EinsumDense projections: no SHAPE/GATHER/PACK shape arithmetic
splitting the delegate's graph). These are for post-training conversion; tfmot QAT of
EinsumDense/DynamicTanh has no QuantizeConfig here yet.
"""

from __future__ import annotations

import math

from ._tf import keras, tf, tfmot
from .config import StudentConfig
from .errors import InputError



@keras.utils.register_keras_serializable("tflite_compress")
class PositionEmbedding(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Adds a learned (sequence_length, dim) table to its input."""

    def __init__(self, sequence_length: int, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer or keras.initializers.RandomNormal(stddev=0.02))

    def build(self, input_shape):
        self.positions = self.add_weight(
            name="positions", shape=(self.sequence_length, int(input_shape[-1])), initializer=self.initializer)
        super().build(input_shape)

    def call(self, inputs):
        return inputs + self.positions

    def get_prunable_weights(self):
        return []  # a few thousand position weights: not worth their accuracy

    def get_config(self):
        return dict(super().get_config(), sequence_length=self.sequence_length,
                    initializer=keras.initializers.serialize(self.initializer))


@keras.utils.register_keras_serializable("tflite_compress")
class DotProductAttention(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Multi-head scaled dot-product attention over already projected `[query, key, value]`.

    Inputs are (batch, length, heads * head_dim); the output has the same shape. In TFLite this
    is RESHAPE/TRANSPOSE, BATCH_MATMUL, MUL, SOFTMAX, BATCH_MATMUL: all int8 once quantized.
    """

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def _split(self, x, length, head_dim):
        return tf.transpose(tf.reshape(x, [-1, length, self.num_heads, head_dim]), [0, 2, 1, 3])

    def call(self, inputs):
        q, k, v = inputs
        length, dim = int(q.shape[1]), int(q.shape[2])
        if dim % self.num_heads:
            raise InputError(f"attention width {dim} is not divisible by num_heads={self.num_heads}")
        head_dim = dim // self.num_heads
        q, k, v = (self._split(t, length, head_dim) for t in (q, k, v))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(head_dim))
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, length, dim])

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        return tf.TensorShape(shape)

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return dict(super().get_config(), num_heads=self.num_heads)


@keras.utils.register_keras_serializable("tflite_compress")
class DynamicTanh(keras.layers.Layer):
    """`gamma * tanh(alpha * x) + beta`: a norm in place of LayerNormalization (Zhu et al., 2025).

    In TFLite it is MUL, TANH, MUL, ADD: XNNPACK runs all four in int8, where LayerNormalization's
    SQUARED_DIFFERENCE and RSQRT leave the delegate.
    """

    def __init__(self, alpha_init: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha_init = float(alpha_init)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.alpha = self.add_weight(name="alpha", shape=(), initializer=keras.initializers.Constant(self.alpha_init))
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return self.gamma * tf.tanh(self.alpha * inputs) + self.beta

    def get_config(self):
        return dict(super().get_config(), alpha_init=self.alpha_init)


@keras.utils.register_keras_serializable("tflite_compress")
class QuantizableMultiHeadAttention(keras.layers.MultiHeadAttention, tfmot.sparsity.keras.PrunableLayer):
    """Keras MultiHeadAttention called with one tensor (self-attention) or `[query, value]`.

    tfmot's wrappers pass a layer one `inputs` argument; Keras MHA wants `query, value`.
    """

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            query, value = input_shape[0], input_shape[-1]
        else:
            query = value = input_shape
        query, value = tf.TensorShape(query), tf.TensorShape(value)
        if not self._built_from_signature:
            self._build_from_signature(query, value)
        # A layer restored from its config has its projections, unbuilt: build them now so
        # that a QuantizeWrapper can reach their kernels.
        for dense, shape in ((self._query_dense, query), (self._key_dense, value), (self._value_dense, value)):
            if not dense.built:
                with tf.name_scope(dense.name):  # unique weight names ("query/kernel"), as a call gives
                    dense.build(shape)
        if not self._output_dense.built:
            value_dim = self._value_dim if self._value_dim else self._key_dim
            with tf.name_scope(self._output_dense.name):
                self._output_dense.build(query[:-1].concatenate([self._num_heads, value_dim]))
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, (list, tuple)):
            query, value = inputs[0], inputs[-1]
        else:
            query = value = inputs
        return super().call(query, value, training=training)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            input_shape = input_shape[0]
        return tf.TensorShape(input_shape)

    def projection_layers(self) -> list:
        return [self._query_dense, self._key_dense, self._value_dense, self._output_dense]

    def get_prunable_weights(self):
        return [d.kernel for d in self.projection_layers()]


@keras.utils.register_keras_serializable("tflite_compress")
class ElementwiseOp(keras.layers.Layer):
    """`x + y` or `x * y` as a layer: what `qat` puts in place of `tf.__operators__.add` /
    `tf.math.multiply` op layers (TFOpLambda), which tfmot cannot wrap."""

    OPS = {"add": tf.add, "multiply": tf.multiply}

    def __init__(self, op: str, **kwargs):
        super().__init__(**kwargs)
        if op not in self.OPS:
            raise InputError(f"ElementwiseOp op={op!r} is not one of: {', '.join(self.OPS)}")
        self.op = op

    def call(self, inputs, y=None, **kwargs):
        if isinstance(inputs, (list, tuple)):
            x, y = (inputs[0], inputs[1]) if y is None else (inputs[0], y)
        else:
            x = inputs
        return self.OPS[self.op](x, y)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            input_shape = input_shape[0]
        return tf.TensorShape(input_shape)

    def get_config(self):
        return dict(super().get_config(), op=self.op)


CUSTOM_LAYERS = {
    "PositionEmbedding": PositionEmbedding,
    "DotProductAttention": DotProductAttention,
    "QuantizableMultiHeadAttention": QuantizableMultiHeadAttention,
    "ElementwiseOp": ElementwiseOp,
    "DynamicTanh": DynamicTanh,
}


def _norm(x, config: StudentConfig, name: str):
    if config.norm == "tanh":
        return DynamicTanh(name=name)(x)
    return keras.layers.LayerNormalization(epsilon=1e-5, name=name)(x)


def _token_dense(x, units: int, config: StudentConfig, name: str, activation=None):
    """A per-token projection. With `static_shapes`, an EinsumDense over the known sequence length:
    tf-keras' Dense on 3-D inputs goes through `tensordot`, whose SHAPE/GATHER/REDUCE_PROD/PACK
    shape arithmetic splits the XNNPACK graph; EinsumDense converts to one FULLY_CONNECTED."""
    if config.static_shapes:
        return keras.layers.EinsumDense("abc,cd->abd", (int(x.shape[1]), units), bias_axes="d",
                                        activation=activation, name=name)(x)
    return keras.layers.Dense(units, activation=activation, name=name)(x)


def _ffn_activation(f, config: StudentConfig, name: str):
    if config.ffn_activation == "gelu":
        return keras.layers.Activation("gelu", name=name + "_gelu")(f)
    f = keras.layers.Activation("relu", name=name + "_relu")(f)
    if config.ffn_activation == "relu2":  # ReLU squared (So et al., 2021): one MUL more
        f = keras.layers.Multiply(name=name + "_square")([f, f])
    return f


def _encoder_block(x, config: StudentConfig, i: int):
    """One transformer block; post-norm (BERT) unless `config.norm_first`."""
    dim, pre = config.embedding_dim, config.norm_first
    p = f"block{i}_"
    h = _norm(x, config, p + "attention_norm") if pre else x
    q = _token_dense(h, dim, config, p + "query")
    k = _token_dense(h, dim, config, p + "key")
    v = _token_dense(h, dim, config, p + "value")
    a = DotProductAttention(config.num_heads, name=p + "attention")([q, k, v])
    a = _token_dense(a, dim, config, p + "attention_output")
    x = keras.layers.Add(name=p + "attention_residual")([x, a])
    if not pre:
        x = _norm(x, config, p + "attention_norm")
    h = _norm(x, config, p + "ffn_norm") if pre else x
    f = _token_dense(h, config.ff_units, config, p + "ffn_in")
    f = _ffn_activation(f, config, p + "ffn")
    f = _token_dense(f, dim, config, p + "ffn_out")
    x = keras.layers.Add(name=p + "ffn_residual")([x, f])
    if not pre:
        x = _norm(x, config, p + "ffn_norm")
    return x


def length_margin(config: StudentConfig) -> int | None:
    """How many positions after a row's last token the student's logits can see, when that is
    bounded, else None (`distill.fit` trains such students on cut batches).

    "cnn": "same"-padded convolutions, then a global max pool over positions, no mask. The output
    at a position depends on the ids in its receptive field (`conv_layers` x (widest kernel - 1)
    + 1 positions) and on where the row's end falls in it. A row of n tokens cut to c >= n + margin
    positions still has an all-padding window, and every window of the full row appears in the
    cut one and back: the max pool, hence the logits, are the same (tests/test_students.py).
    "bag" averages over all positions and "transformer" attends over them: None.
    """
    if config.family != "cnn":
        return None
    return config.conv_layers * (max(config.kernel_sizes) - 1) + 1


def build_student(
    config: StudentConfig, vocab_size: int, sequence_length: int, num_labels: int, seed: int = 0
) -> "keras.Model":
    """Build a student with int32 token-id input `token_ids` and float logits output."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(ids)
    if config.family == "cnn":
        branches = []
        for k in config.kernel_sizes:
            h = x
            for j in range(config.conv_layers):
                name = f"conv_k{k}" if j == 0 else f"conv_k{k}_{j + 1}"
                h = keras.layers.Conv1D(config.filters, k, padding="same", activation="relu", name=name)(h)
            branches.append(keras.layers.GlobalMaxPooling1D(name=f"max_pool_k{k}")(h))
        x = branches[0] if len(branches) == 1 else keras.layers.Concatenate(name="concat")(branches)
    elif config.family == "bag":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    else:
        x = PositionEmbedding(sequence_length, name="positions")(x)
        if not config.norm_first:
            x = _norm(x, config, "embedding_norm")
        for i in range(config.transformer_layers):
            x = _encoder_block(x, config, i)
        if config.norm_first:
            x = _norm(x, config, "final_norm")
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    for j in range(config.hidden_layers):
        name = "hidden" if j == config.hidden_layers - 1 else f"hidden_{j + 1}"
        x = keras.layers.Dense(config.hidden_units, activation="relu", name=name)(x)
    logits = keras.layers.Dense(num_labels, name="logits")(x)
    return keras.Model(ids, logits, name=f"student_{config.family}")
