"""Named built-in recipes (`tflite_compress/recipes/*.json`) and recipe lookup by name or path.

Each file names the stages it switches on and the settings where it departs from the `Recipe`
defaults (keys missing from a recipe JSON take the defaults), so the built-ins follow the suite's
tuned defaults. The resolved recipe, with every setting, is written beside each output as
`recipe.json` and round-trips through `Recipe.from_dict` unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import Recipe
from .errors import InputError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "int8-pruned-50"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def load_recipe(name_or_path: str | os.PathLike | None) -> Recipe:
    """A built-in recipe by name (`int8-default`, `ptq-only`, ...) or a recipe JSON file by path."""
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    text = str(name_or_path)
    builtin = RECIPES_DIR / f"{text}.json"
    if os.sep not in text and not text.endswith(".json"):
        if builtin.is_file():
            return Recipe.load(builtin)
        raise InputError(f"--recipe {text!r}: no such built-in recipe (built-in: {', '.join(builtin_names())}) "
                         "and not a .json path")
    return Recipe.load(Path(text))


def with_target(recipe: Recipe, target: str | None) -> Recipe:
    """`--target` on the command line overrides the recipe's `convert.target`."""
    if target is None:
        return recipe
    import dataclasses

    return recipe.replace(convert=dataclasses.replace(recipe.convert, target=target))
