"""`tflite-compress export-android`: a run's INT8 model into the Android demo's assets.

Registered on the root group by `cli.py` through `register(main)`; the work is done by
`tflite_compress.android` (numpy only, no TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(main: click.Group) -> None:
    """Add `export-android` to the root command group."""
    main.add_command(export_android_cmd)


@click.command("export-android")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--app", "app_dir", type=click.Path(path_type=Path), default=Path("android_demo/app"), show_default=True,
              help="The Android app folder; files go to APP/src/main/assets.")
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the cross-language golden file here (and unicode_classes.json beside it), "
                   "made from the exported assets, e.g. android_demo/golden/intent_golden.json.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="CLINC-style JSON for the golden utterances (default: the bundled CLINC150).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_android_cmd(run_dir: Path, app_dir: Path, golden_path: Path | None, data_path: Path | None,
                       as_json: bool) -> None:
    """Copy RUN_DIR's INT8 model, vocab.txt, labels.txt and model_info.json into the app's assets.

    Each file is written to a temp file and renamed into place; the copies are then checked the
    way the app reads them (schema version, sequence length, int32 input, int8 output with its
    quantization parameters, vocabulary and labels). Bad input exits with code 2.
    """
    from .android import write_golden, export_android
    from .cli_common import fail as _fail
    from .data import CLINC150_FILE
    from .errors import InputError

    try:
        assets = export_android(run_dir, app_dir)
        golden = write_golden(assets.folder, golden_path, data_path or CLINC150_FILE) if golden_path else None
    except InputError as exc:
        _fail(exc)
    result = {"run_dir": str(run_dir), "assets": assets.to_dict(),
              "golden": None if golden is None else {"path": str(golden_path), **golden["counts"]}}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    lines = [f"exported {run_dir} -> {assets.folder}/"]
    lines += [f"  {name:<20} {meta['size_bytes']:>9} bytes  sha256 {meta['sha256'][:12]}" for name, meta in assets.files.items()]
    q = assets.info["output"]["quantization"]
    lines.append(f"  checked: schema {assets.info['schema_version']}, sequence_length {assets.info['sequence_length']}, "
                 f"int32 -> int8[{assets.info['num_labels']}] (scale {q['scale']:.6g}, zero_point {q['zero_point']})")
    if golden is not None:
        c = golden["counts"]
        lines.append(f"golden: {golden_path} ({c['cases']} cases: {c['clinc150_test']} CLINC150 test, "
                     f"{c['varied']} varied, {c.get('clinc150_oos', 0)} CLINC150 out-of-scope, {c['crafted']} crafted)"
                     + (f"; oos rule {golden['oos_rule']['score']} < {golden['oos_rule']['threshold']:.4f}, "
                        f"{len(golden['rule_outputs'])} raw rows for it" if "oos_rule" in golden else ""))
    if "oos_rule" in assets.info:
        r = assets.info["oos_rule"]
        lines.append(f"  oos rule: {r['score']} < {r['threshold']:.4f} -> {r['label']!r} (the app applies it)")
    click.echo("\n".join(lines))


if __name__ == "__main__":  # `python -m tflite_compress.commands_android RUN_DIR ...` (used by android.mk)
    export_android_cmd(prog_name="tflite-compress export-android")
