"""`tflite-compress report`: one self-contained HTML page from run folders (thin over `report_html.py`)."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import emit, guarded


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write (whole, or not at all).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Labelled texts (CSV/TSV/JSONL, or CLINC-style JSON: its test split) to run the file on: adds the "
                   "most confused pairs and out-of-scope recall/precision against the threshold.")
@click.option("--latency-runs", type=click.IntRange(10, 100_000), default=300, show_default=True,
              help="Timed invokes for the latency distribution (batch 1, 1 thread, XNNPACK).")
@click.option("--trust-model", is_flag=True,
              help="Skip the child-process probe of each run's .tflite (the flatbuffer is still verified).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@guarded
def report_cmd(run_dirs: tuple[Path, ...], out_path: Path, data_path: Path | None, latency_runs: int,
               trust_model: bool, as_json: bool) -> None:
    """Write one HTML page with plots for RUN_DIR... (run folders holding report.json); no network needed to view it.

    Accuracy (or the run's metric) by stage with size, size vs accuracy across runs, sparsity per layer,
    most confused pairs, the out-of-scope threshold trade-off, latency distribution and XNNPACK delegation.
    Stages it does not know are shown as tables. `demo` and `compress` write report.html beside report.json.
    """
    from .report_html import write_report

    written = write_report(run_dirs, out_path, data_path, latency_runs, trust_model=trust_model)
    emit(written, as_json, f"written: {written['out']} ({written['bytes'] / 1024:,.0f} KB, {written['images']} images, "
                           f"{len(written['runs'])} run{'s' if len(written['runs']) != 1 else ''})")


def register(group: click.Group) -> None:
    group.add_command(report_cmd)
