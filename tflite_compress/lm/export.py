"""The decoder as a `.tflite` with a KV cache: `prefill`, `decode`, `extend` and `score` signatures.

Built from builtin ops only (no Flex, no custom ops): the forward pass is re-written in plain TF
ops over the Keras model's weights (read by layer name), with static shapes wherever the step
allows, and converted with `TFLiteConverter.from_saved_model(dir, signature_keys=...)`.

Signatures (batch 1; `L` layers, `H` heads, `C` the context, `D` = dim / H, `V` the vocabulary):
- `prefill(token_ids int32 [1, P])` -> `logits [1, V]` (of the last position), `k_cache`,
  `v_cache` float32 `[L, H, C, D]` (positions >= P are zero).
- `decode(token_id int32 [1], position int32 [1], k_cache, v_cache)` -> `logits [1, V]`,
  `k_cache`, `v_cache` (the new token's keys and values written at `position`).
- `extend(token_ids int32 [1, P], start int32 [1], k_cache, v_cache)` -> the same as prefill, for
  P new tokens appended at `start` to an existing cache (a dialog's next turn).
- `score(token_ids int32 [1, T])` -> `logits [1, T, V]` (teacher-forced, for perplexity).
P and T may be 1..C (a dynamic dimension); the caller keeps `position + new tokens <= C`.

Quantization kinds: "float"; "dynamic" (int8 weights, float activations: `Optimize.DEFAULT`
without a representative dataset); "full-int8" (int8 weights and activations, calibrated on
train windows through every signature; float32 at the signature boundary).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile

import numpy as np

from .._tf import tf
from ..convert import ConversionError, _converter_message
from .config import QUANTIZATIONS, DecoderConfig

SIGNATURES = ("prefill", "decode", "extend", "score")
EXPORT_FORMAT = 2  # bump when the file's graph changes: cached teacher/student files are keyed by it
NEG = -1e9


def decoder_weights(model, config: DecoderConfig) -> dict[str, np.ndarray]:
    """The weights `export` needs, by name, from a (stripped) Keras decoder."""
    get = lambda name: [w.numpy() for w in model.get_layer(name).weights]  # noqa: E731
    w = {"tok_emb": get("tok_emb")[0], "pos_emb": get("pos_emb")[0]}
    for i in range(config.layers):
        for part in ("ln1", "ln2"):
            w[f"b{i}_{part}_g"], w[f"b{i}_{part}_b"] = get(f"b{i}_{part}")
        for part in ("q", "k", "v", "o", "ff1", "ff2"):
            w[f"b{i}_{part}_w"], w[f"b{i}_{part}_b"] = get(f"b{i}_{part}")
    w["final_ln_g"], w["final_ln_b"] = get("final_ln")
    w["lm_head_w"], w["lm_head_b"] = get("lm_head")
    w["ln_eps"] = np.float32(model.get_layer("final_ln").epsilon)
    return w


def fuse_projections(weights: dict[str, np.ndarray], config: DecoderConfig) -> dict[str, np.ndarray]:
    """The same function in fewer ops per step: each block's q, k, v kernels as one `[dim, 3 dim]` kernel
    (one FULLY_CONNECTED and a SPLIT instead of three FULLY_CONNECTED), with attention's 1/sqrt(D)
    folded into q's columns (no MUL on the scores).

    A decode step is about a hundred small ops whose dispatch, not arithmetic, is most of its time
    (`tflite-compress bench-lm --profile`). (LayerNorm's scale and shift need no folding here:
    the converter already fuses a constant MUL/ADD into the FULLY_CONNECTED that follows.)
    Zeros of a pruned kernel stay zeros."""
    w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    scale = np.float32(1.0 / math.sqrt(config.dim // config.heads))
    out = {k: v for k, v in w.items() if not re.match(r"b\d+_[qkv]_[wb]$", k)}
    for i in range(config.layers):
        out[f"b{i}_qkv_w"] = np.concatenate([w[f"b{i}_q_w"] * scale, w[f"b{i}_k_w"], w[f"b{i}_v_w"]], axis=1)
        out[f"b{i}_qkv_b"] = np.concatenate([w[f"b{i}_q_b"] * scale, w[f"b{i}_k_b"], w[f"b{i}_v_b"]])
    return out


class KVCacheDecoder(tf.Module):
    """The decoder's math in plain TF ops over fixed weights, with the four signatures."""

    def __init__(self, weights: dict[str, np.ndarray], config: DecoderConfig):
        super().__init__()
        self.c = config
        self.hd = config.dim // config.heads
        weights = dict(weights)
        self.eps = float(weights.pop("ln_eps"))
        weights = fuse_projections(weights, config)
        self.w = {k: tf.Variable(v.astype(np.float32), trainable=False, name=k) for k, v in weights.items()}
        self.vocab = int(weights["lm_head_w"].shape[1])
        c, h, d = config.context, config.heads, self.hd
        cache = tf.TensorSpec([config.layers, h, c, d], tf.float32)
        self.prefill = tf.function(self._prefill, input_signature=[tf.TensorSpec([1, None], tf.int32, name="token_ids")])
        self.decode = tf.function(self._decode, input_signature=[
            tf.TensorSpec([1], tf.int32, name="token_id"), tf.TensorSpec([1], tf.int32, name="position"),
            tf.TensorSpec.from_spec(cache, name="k_cache"), tf.TensorSpec.from_spec(cache, name="v_cache")])
        self.extend = tf.function(self._extend, input_signature=[
            tf.TensorSpec([1, None], tf.int32, name="token_ids"), tf.TensorSpec([1], tf.int32, name="start"),
            tf.TensorSpec.from_spec(cache, name="k_cache"), tf.TensorSpec.from_spec(cache, name="v_cache")])
        self.score = tf.function(self._score, input_signature=[tf.TensorSpec([1, None], tf.int32, name="token_ids")])

    # -- pieces
    def _ln(self, x, name):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        centred = x - mean
        var = tf.reduce_mean(centred * centred, axis=-1, keepdims=True)
        return centred * tf.math.rsqrt(var + self.eps) * self.w[f"{name}_g"] + self.w[f"{name}_b"]

    def _qkv(self, x, i):  # the three projections as one matmul, split (q pre-scaled: fuse_projections)
        return tf.split(self._dense(self._ln(x, f"b{i}_ln1"), f"b{i}_qkv"), 3, axis=-1)

    def _dense(self, x, name):
        return tf.matmul(x, self.w[f"{name}_w"]) + self.w[f"{name}_b"]

    def _heads(self, x):  # [n, dim] -> [H, n, D]
        return tf.transpose(tf.reshape(x, [-1, self.c.heads, self.hd]), [1, 0, 2])

    def _merge(self, x):  # [H, n, D] -> [n, dim]
        return tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, self.c.dim])

    def _attend(self, q, k, v, bias):
        scores = tf.matmul(q, k, transpose_b=True) + bias  # q carries the 1/sqrt(D) scale
        return tf.matmul(tf.nn.softmax(scores, axis=-1), v)

    def _block_out(self, x, i, ctx):
        x = x + self._dense(self._merge(ctx), f"b{i}_o")
        h = tf.nn.relu(self._dense(self._ln(x, f"b{i}_ln2"), f"b{i}_ff1"))
        return x + self._dense(h, f"b{i}_ff2")

    def _head(self, x):
        return self._dense(self._ln(x, "final_ln"), "lm_head")

    # -- signatures
    def _score(self, token_ids):
        ids = token_ids[0]
        n = tf.shape(ids)[0]
        x = tf.gather(self.w["tok_emb"], ids) + self.w["pos_emb"][:n]
        pos = tf.range(n)
        bias = tf.where(pos[None, :] <= pos[:, None], 0.0, NEG)  # [n, n]: key <= query
        for i in range(self.c.layers):
            q, k, v = (self._heads(t) for t in self._qkv(x, i))
            x = self._block_out(x, i, self._attend(q, k, v, bias))
        return {"logits": self._head(x)[None]}

    def _extend_core(self, ids, start, k_cache, v_cache):
        """P new tokens at positions start..start+P-1 against the cache; the cache gets their keys/values."""
        n = tf.shape(ids)[0]
        positions = start + tf.range(n)
        x = tf.gather(self.w["tok_emb"], ids) + tf.gather(self.w["pos_emb"], positions)
        slots = tf.range(self.c.context)
        place = tf.cast(tf.equal(slots[:, None], positions[None, :]), tf.float32)  # [C, P]
        keep = 1.0 - tf.reduce_sum(place, axis=1)[:, None]  # [C, 1]
        bias = tf.where(slots[None, :] <= positions[:, None], 0.0, NEG)  # [P, C]
        ks, vs = tf.unstack(k_cache), tf.unstack(v_cache)
        new_k, new_v = [], []
        for i in range(self.c.layers):
            q, k, v = (self._heads(t) for t in self._qkv(x, i))
            kc = ks[i] * keep + tf.matmul(place[None], k)  # [H, C, D]
            vc = vs[i] * keep + tf.matmul(place[None], v)
            new_k.append(kc)
            new_v.append(vc)
            x = self._block_out(x, i, self._attend(q, kc, vc, bias))
        return self._head(x[-1:]), tf.stack(new_k), tf.stack(new_v)

    def _extend(self, token_ids, start, k_cache, v_cache):
        logits, k, v = self._extend_core(token_ids[0], start[0], k_cache, v_cache)
        return {"logits": logits, "k_cache": k, "v_cache": v}

    def _prefill(self, token_ids):
        zeros = tf.zeros([self.c.layers, self.c.heads, self.c.context, self.hd])
        logits, k, v = self._extend_core(token_ids[0], tf.constant(0), zeros, zeros)
        return {"logits": logits, "k_cache": k, "v_cache": v}

    def _decode(self, token_id, position, k_cache, v_cache):
        """One token: every shape static; the cache slot is a one-hot blend (MUL/ADD, no scatter)."""
        x = tf.gather(self.w["tok_emb"], token_id) + tf.gather(self.w["pos_emb"], position)  # [1, dim]
        slots = tf.range(self.c.context)
        hot = tf.cast(tf.equal(slots, position), tf.float32)[:, None]  # [C, 1]
        bias = tf.where(slots <= position, 0.0, NEG)[None, :]  # [1, C]
        ks, vs = tf.unstack(k_cache), tf.unstack(v_cache)
        new_k, new_v = [], []
        for i in range(self.c.layers):
            q, k, v = (tf.reshape(t, [self.c.heads, 1, self.hd]) for t in self._qkv(x, i))
            kc = ks[i] * (1.0 - hot) + k * hot
            vc = vs[i] * (1.0 - hot) + v * hot
            new_k.append(kc)
            new_v.append(vc)
            ctx = self._attend(q, kc, vc, bias)  # [H, 1, D]
            x = self._block_out(x, i, ctx)
        return {"logits": self._head(x), "k_cache": tf.stack(new_k), "v_cache": tf.stack(new_v)}


def _calibration(windows: np.ndarray, config: DecoderConfig, n: int):
    """Representative samples for every signature, from train windows (float32 cache from prefill)."""
    rng = np.random.default_rng(0)
    rows = windows[rng.permutation(len(windows))[:n], :config.context].astype(np.int32)

    def gen():
        for r in rows:
            p = int(rng.integers(2, config.context - 1))
            yield "score", {"token_ids": r[None, :]}
            yield "prefill", {"token_ids": r[None, :p]}
        # decode/extend see caches filled by the float module (computed in `convert`)
        for item in _cache_samples:
            yield item

    _cache_samples: list = []
    return rows, gen, _cache_samples


def convert(model, config: DecoderConfig, quantization: str = "float", calibration_windows: np.ndarray | None = None,
            calibration_count: int = 64) -> bytes:
    """The `.tflite` bytes of `model` with the four signatures, quantized as asked; BUILTINS only."""
    return convert_many(model, config, (quantization,), calibration_windows, calibration_count)[quantization]


def convert_many(model, config: DecoderConfig, quantizations=("float",), calibration_windows: np.ndarray | None = None,
                 calibration_count: int = 64) -> dict[str, bytes]:
    """`.tflite` bytes of `model` for each quantization kind, from one SavedModel (traced and saved once)."""
    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown:
        raise ConversionError(f"unknown quantization {unknown[0]!r}")
    if "full-int8" in quantizations and calibration_windows is None:
        raise ConversionError("full-int8 needs calibration windows")
    module = KVCacheDecoder(decoder_weights(model, config), config)
    tmp = tempfile.mkdtemp(prefix="tflite_compress_lm_")
    try:
        sigs = {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
        tf.saved_model.save(module, tmp, signatures=sigs)
        return {q: _convert_saved(tmp, module, config, q, calibration_windows, calibration_count) for q in quantizations}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_saved(saved_dir: str, module: KVCacheDecoder, config: DecoderConfig, quantization: str,
                   calibration_windows, calibration_count: int) -> bytes:
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=list(SIGNATURES))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in ("dynamic", "full-int8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "full-int8":
        rows, gen, cache_samples = _calibration(calibration_windows, config, calibration_count)
        for r in rows[: max(1, len(rows) // 2)]:
            p = int(len(r) // 2)
            out = module.prefill(tf.constant(r[None, :p]))
            k, v = out["k_cache"], out["v_cache"]
            cache_samples.append(("decode", {"token_id": r[p:p + 1], "position": np.array([p], np.int32),
                                             "k_cache": k.numpy(), "v_cache": v.numpy()}))
            cache_samples.append(("extend", {"token_ids": r[None, p:p + 4], "start": np.array([p], np.int32),
                                             "k_cache": k.numpy(), "v_cache": v.numpy()}))
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise ConversionError(f"LM conversion ({quantization}) failed: {_converter_message(exc)}") from None


def model_info(config: DecoderConfig, vocab_size: int, quantization: str) -> dict:
    """The signatures' inputs and outputs, for `model_info.json`."""
    cache = [config.layers, config.heads, config.context, config.dim // config.heads]
    return {
        "kind": "causal-lm",
        "quantization": quantization,
        "context": config.context,
        "vocab_size": vocab_size,
        "layers": config.layers, "dim": config.dim, "heads": config.heads, "ff_dim": config.ff_dim,
        "cache_shape": cache,
        "signatures": {
            "prefill": {"inputs": {"token_ids": ["int32", [1, "P"]]},
                        "outputs": {"logits": ["float32", [1, vocab_size]], "k_cache": ["float32", cache],
                                    "v_cache": ["float32", cache]}},
            "decode": {"inputs": {"token_id": ["int32", [1]], "position": ["int32", [1]],
                                  "k_cache": ["float32", cache], "v_cache": ["float32", cache]},
                       "outputs": {"logits": ["float32", [1, vocab_size]], "k_cache": ["float32", cache],
                                   "v_cache": ["float32", cache]}},
            "extend": {"inputs": {"token_ids": ["int32", [1, "P"]], "start": ["int32", [1]],
                                  "k_cache": ["float32", cache], "v_cache": ["float32", cache]},
                       "outputs": {"logits": ["float32", [1, vocab_size]], "k_cache": ["float32", cache],
                                   "v_cache": ["float32", cache]}},
            "score": {"inputs": {"token_ids": ["int32", [1, "T"]]},
                      "outputs": {"logits": ["float32", [1, "T", vocab_size]]}},
        },
        "notes": "P, T in 1..context; keep position + new tokens <= context. The caller tokenizes (vocab.txt, "
                 "[EOT]=2 ends a turn) and samples.",
    }


def write(path: str | os.PathLike, content: bytes) -> None:
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, content)
