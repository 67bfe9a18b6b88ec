"""CLI commands of the language-model path: `demo-lm` (trains; imports TensorFlow), and the
TensorFlow-free harness commands `eval-lm`, `generate`, `chat` and `bench-lm` over a KV-cache
`.tflite` (with `vocab.txt` beside it, or `--vocab`).

Exit codes: 0 success, 1 a gate was missed, 2 bad input, 3 a stage could not do what was asked.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import emit, guarded
from .errors import GateError, InputError


def _open(model: Path, vocab: Path | None, threads: int):
    from .runtime import RuntimeOptions
    from .runtime.lm import LMFile

    return LMFile(model, RuntimeOptions(threads=threads), vocab=vocab)


def _model_options(func):
    for opt in reversed([
        click.argument("model", type=click.Path(path_type=Path)),
        click.option("--vocab", type=click.Path(path_type=Path), help="vocab.txt (default: beside MODEL)."),
        click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Interpreter threads."),
    ]):
        func = opt(func)
    return func


@click.command("demo-lm")
@click.option("--name", default="chitchat-lm", show_default=True, help="Run name: outputs go to RUNS_DIR/NAME.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("--corpus", "corpus_spec", default="chitchat", show_default=True,
              help="chitchat (the bundled Chit-Chat corpus) or a .txt (one document a line) / .jsonl "
                   "(text, or context + reply) file.")
@click.option("--recipe", "recipe_path", type=click.Path(path_type=Path), help="An LM recipe .json (default: built in).")
@click.option("--teacher", "teacher_path", type=click.Path(path_type=Path),
              help="Your own teacher instead of training one: a Keras causal LM (.keras, Keras 3 or tf-keras, or "
                   ".h5) mapping int32 token ids [batch, T] to logits [batch, T, V]. Needs --teacher-vocab.")
@click.option("--teacher-vocab", type=click.Path(path_type=Path),
              help="The vocabulary --teacher was trained with (vocab.txt: [PAD], [UNK], [EOT], then one token a "
                   "line; V lines). Used as the tokenizer instead of learning one.")
@click.option("--unsafe", is_flag=True, help="Allow a --teacher with Lambda layers (they run stored code).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def demo_lm(name: str, runs_dir: Path, corpus_spec: str, recipe_path: Path | None, teacher_path: Path | None,
            teacher_vocab: Path | None, unsafe: bool, as_json: bool) -> None:
    """Train, distil, prune and quantize a decoder LM into a KV-cache .tflite; print the table.

    With --teacher the student is distilled from your Keras causal LM (its row is measured in Keras)."""
    from .lm import corpus as corpus_lib
    from .lm.config import LMRecipe
    from .lm.teacher import check_teacher_options

    recipe = LMRecipe.load(recipe_path) if recipe_path else LMRecipe()
    check_teacher_options(teacher_path, teacher_vocab, recipe.distill.top_k)  # before the corpus is read
    corpus = corpus_lib.load(corpus_spec)
    from .lm.pipeline import format_table, run_lm_pipeline

    result = run_lm_pipeline(corpus, recipe, runs_dir / name, runs_dir / "cache", verbose=0 if as_json else 2,
                             teacher_path=teacher_path, teacher_vocab=teacher_vocab, unsafe=unsafe)
    emit(result.report, as_json, format_table(result.report) + f"\n\nwritten: {result.out_dir}/")


@click.command("eval-lm")
@_model_options
@click.option("--data", default="chitchat", show_default=True,
              help="chitchat (its test split), chitchat:val, or a .txt / .jsonl file (all of it).")
@click.option("--max-tokens", type=click.IntRange(16), default=20000, show_default=True,
              help="Tokens scored teacher-forced (perplexity, top-1/top-5).")
@click.option("--examples", "n_examples", type=click.IntRange(0), default=200, show_default=True,
              help="(context -> reply) pairs generated greedily for BLEU and ROUGE (0: none).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=24, show_default=True)
@click.option("--max-perplexity", type=float, help="Gate: fail (exit 1) above this perplexity.")
@click.option("--baseline", type=click.Path(path_type=Path), help="Another LM .tflite evaluated on the same data.")
@click.option("--max-increase", type=float,
              help="Gate with --baseline: fail when perplexity > baseline x (1 + R).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def eval_lm(model: Path, vocab: Path | None, threads: int, data: str, max_tokens: int, n_examples: int,
            max_new_tokens: int, max_perplexity: float | None, baseline: Path | None, max_increase: float | None,
            as_json: bool) -> None:
    """Perplexity, next-token top-1/top-5, BLEU and ROUGE of a KV-cache LM file (no TensorFlow)."""
    from .lm.corpus import load_eval
    from .runtime.lm import evaluate_lm

    if max_increase is not None and baseline is None:
        raise InputError("--max-increase needs --baseline OTHER.tflite")
    lm = _open(model, vocab, threads)
    convs = load_eval(data)
    report = evaluate_lm(lm, convs, max_tokens, n_examples, max_new_tokens)
    lines = [_eval_line(report)]
    if baseline is not None:
        base = evaluate_lm(_open(baseline, vocab, threads), convs,
                           max_tokens, n_examples, max_new_tokens)
        report["baseline"] = base
        report["perplexity_increase"] = report["perplexity"] / base["perplexity"] - 1
        lines.append(_eval_line(base) + f"\nperplexity increase vs baseline: {100 * report['perplexity_increase']:+.2f}%")
    emit(report, as_json, "\n".join(lines))
    if max_perplexity is not None and report["perplexity"] > max_perplexity:
        raise GateError(f"perplexity {report['perplexity']:.2f} > --max-perplexity {max_perplexity}")
    if max_increase is not None and report["perplexity_increase"] > max_increase:
        raise GateError(f"perplexity increase {report['perplexity_increase']:.4f} > --max-increase {max_increase}")


def _eval_line(r: dict) -> str:
    line = (f"{r['model']}: perplexity {r['perplexity']:.2f} over {r['tokens']:,} tokens; "
            f"top-1 {r['top1']:.3f}, top-5 {r['top5']:.3f}")
    if "bleu" in r:
        line += (f"; {r['examples']} replies: BLEU {r['bleu']:.2f}, ROUGE-1 {r['rouge1']:.3f}, "
                 f"ROUGE-2 {r['rouge2']:.3f}, ROUGE-L {r['rougeL']:.3f}")
    return line


def _sampling(func):
    for opt in reversed([
        click.option("--max-new-tokens", type=click.IntRange(1), default=32, show_default=True),
        click.option("--temperature", type=click.FloatRange(0), default=0.0, show_default=True,
                     help="0 = greedy; above 0 samples."),
        click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="Sample among the k best (0: all)."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]):
        func = opt(func)
    return func


@click.command("generate")
@_model_options
@click.argument("prompt")
@_sampling
@click.option("--no-stop", is_flag=True, help="Do not stop at the end of the turn ([EOT]).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@guarded
def generate(model: Path, vocab: Path | None, threads: int, prompt: str, max_new_tokens: int, temperature: float,
             top_k: int, seed: int, no_stop: bool, as_json: bool) -> None:
    """Continue PROMPT (one turn, closed by [EOT]) through the KV cache (no TensorFlow)."""
    from .runtime.lm import EOT_ID, generate_ids

    lm = _open(model, vocab, threads)
    ids = lm.tokenizer.encode_turns([prompt])
    if len(ids) + 1 > lm.context:
        raise InputError(f"the prompt has {len(ids)} tokens; {model} has a context of {lm.context} "
                         f"(at most {lm.context - 1} leave room for a reply)")
    new = generate_ids(lm, ids, min(max_new_tokens, lm.context - len(ids)), temperature, top_k, seed, not no_stop)
    text = lm.tokenizer.decode([t for t in new if t != EOT_ID])
    emit({"prompt": prompt, "prompt_tokens": len(ids), "generated": text, "token_ids": new}, as_json, text)


@click.command("chat")
@_model_options
@_sampling
@guarded
def chat(model: Path, vocab: Path | None, threads: int, max_new_tokens: int, temperature: float, top_k: int,
         seed: int) -> None:
    """Talk to the model; the KV cache is kept across turns (each turn prefills only its new tokens).

    One line a turn on stdin; an empty line or end of input ends the session.
    """
    from .runtime.lm import DialogSession

    lm = _open(model, vocab, threads)
    session = DialogSession(lm, max_new_tokens, temperature, top_k, seed)
    stdin = click.get_text_stream("stdin")
    while True:
        if stdin.isatty():
            click.echo("you> ", nl=False)
        line = stdin.readline()
        if not line or not line.strip():
            break
        click.echo(f"model> {session.turn(line.strip())}")
    click.echo(f"[{len(session.history)} tokens; prefilled {session.prefilled_tokens} (without the session cache: "
               f"{session.history_tokens}); {session.resets} context reset(s)]", err=True)


@click.command("bench-lm")
@_model_options
@click.option("--context", "context_tokens", type=click.IntRange(1), default=64, show_default=True,
              help="Tokens prefilled before decoding (and scored by the cacheless comparison).")
@click.option("--steps", type=click.IntRange(1), default=64, show_default=True, help="Decode steps timed.")
@click.option("--profile", is_flag=True,
              help="Also time each op of one decode step alone, with the kernel that runs it (XNNPACK, builtin).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def bench_lm(model: Path, vocab: Path | None, threads: int, context_tokens: int, steps: int, profile: bool,
             as_json: bool) -> None:
    """Prefill ms, decode tokens/s through the cache, and re-running score over the context (no TensorFlow)."""
    from .runtime.lm import decode_speed

    lm = _open(model, vocab, threads)
    r = dict(decode_speed(lm, context_tokens, steps), model=str(model), threads=threads)
    text = (f"{model} ({threads} thread(s)): prefill {r['context_tokens']} tokens {r['prefill_ms']:.2f} ms; "
            f"decode {r['decode_tokens_per_s']:,.0f} tokens/s ({r['decode_ms_per_token']:.3f} ms/token); "
            f"score over {r['context_tokens']} tokens {r['score_ms']:.2f} ms -> cache {r['speedup_vs_score']:.1f}x "
            f"faster per generated token")
    if profile:
        from .runtime.delegation import format_profile
        from .runtime.lm import decode_profile

        r["decode_profile"] = p = decode_profile(lm, context_tokens)
        text += "\n" + format_profile(p).replace("per-op profile at batch 1", "decode step, per-op profile", 1)
    emit(r, as_json, text)


def register(group: click.Group) -> None:
    for cmd in (demo_lm, eval_lm, generate, chat, bench_lm):
        group.add_command(cmd)
