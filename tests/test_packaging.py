"""The wheel carries what an installed tool needs: the bundled CLINC150 data (with its licence) and the recipes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_data_and_recipes_and_finds_them_from_any_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("tflite_compress-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("data_full.json", "LICENSE", "README.md"):
        assert f"tflite_compress/calibration_data/clinc150/{name}" in names, name
    recipes = {p.name for p in (ROOT / "tflite_compress" / "recipes").glob("*.json")}
    assert recipes and {f"tflite_compress/recipes/{r}" for r in recipes} <= names

    # Installed as the wheel lays it out (unpacked, first on the path), run from an unrelated folder.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(f"""
        import tflite_compress, tflite_compress.data as d
        assert tflite_compress.__file__.startswith({str(site)!r}), tflite_compress.__file__
        assert d.CLINC150_FILE.is_file() and str(d.CLINC150_FILE).startswith({str(site)!r})
        ds = d.load_clinc150()
        print(len(ds.train), len(ds.test))
        from tflite_compress.recipes import load_recipe
        print(load_recipe(None).name)
    """)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["15100", "5500", "int8-pruned-50"]
    help_out = subprocess.run([sys.executable, "-m", "tflite_compress.cli", "demo", "--help"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)
    assert help_out.returncode == 0 and "CLINC150" in help_out.stdout, help_out.stderr
