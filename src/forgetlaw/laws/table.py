"""Reading and checking the table a law is fitted to (CSV or Parquet, canonical column names)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.laws.forms import Law

CANONICAL_COLUMNS = (
    "domain", "model_size", "tokens", "unique_tokens", "injection",
    "pretrain_loss_before", "pretrain_loss", "finetune_loss", "loss",
)
# Columns that are logged, so must be > 0; `injection` must be in [0, 1).
POSITIVE_COLUMNS = ("model_size", "tokens", "unique_tokens", "pretrain_loss_before",
                    "pretrain_loss", "finetune_loss", "loss")


def parse_renames(pairs: Sequence[str] | None) -> dict[str, str]:
    """`["model_size=params"]` -> {"params": "model_size"} (file name -> canonical name)."""
    renames: dict[str, str] = {}
    for pair in pairs or ():
        new, sep, old = pair.partition("=")
        if not sep or not new.strip() or not old.strip():
            raise UserError(f"--column {pair!r} is not NEW=OLD; write e.g. --column model_size=params")
        renames[old.strip()] = new.strip()
    return renames


def read_table(path: str | Path, renames: dict[str, str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"table {str(path)!r} does not exist; pass a CSV or Parquet file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet" or suffix == ".pq":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".txt", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise UserError(f"table {str(path)!r}: unknown format {suffix!r}; use .csv or .parquet")
    except UserError:
        raise
    except Exception as exc:  # a parser error is the user's file, not our bug
        raise UserError(f"cannot read table {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if renames:
        missing = [old for old in renames if old not in df.columns]
        if missing:
            raise UserError(f"--column names {missing[0]!r}, which is not a column of {path.name}; "
                            f"columns are: {', '.join(map(str, df.columns))}")
        clash = [new for old, new in renames.items() if new in df.columns and new != old]
        if clash:
            raise UserError(f"--column {clash[0]}=...: {path.name} already has a column {clash[0]!r}; "
                            "rename or drop that column first, or map a different name")
        df = df.rename(columns=renames)
    return df


def check_table(df: pd.DataFrame, law: Law, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows and columns the law needs, as floats; anything wrong is a one-line UserError."""
    if len(df) == 0:
        raise UserError("the table has no rows; fit needs at least one run per group")
    needed = list(law.columns) + [law.target]
    for name in needed:
        if name not in df.columns:
            raise UserError(f"column {name!r} is missing (law {law.name} reads {', '.join(needed)}); "
                            f"rename yours with --column {name}=YOUR_NAME")
    out = pd.DataFrame(index=df.index)
    for name in needed:
        values = pd.to_numeric(df[name], errors="coerce")
        bad_text = values.isna() & df[name].notna()
        if bad_text.any():
            row = int(np.flatnonzero(bad_text.to_numpy())[0])
            raise UserError(f"column {name!r} is not numeric (row {row}: {df[name].iloc[row]!r}); "
                            "fix or drop that row")
        if values.isna().any():
            rows = np.flatnonzero(values.isna().to_numpy())
            raise UserError(f"column {name!r} has {rows.size} NaN value(s) (first at row {rows[0]}); "
                            "drop or fill those rows")
        values = values.astype(float)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values.to_numpy()))[0])
            raise UserError(f"column {name!r} is infinite at row {row}; drop that row")
        if name in POSITIVE_COLUMNS and (values <= 0).any():
            row = int(np.flatnonzero((values <= 0).to_numpy())[0])
            raise UserError(f"column {name!r} must be > 0 (row {row}: {values.iloc[row]}); "
                            "drop that row or fix the value")
        if name == "injection" and ((values < 0) | (values >= 1)).any():
            row = int(np.flatnonzero(((values < 0) | (values >= 1)).to_numpy())[0])
            raise UserError(f"column 'injection' must be a fraction in [0, 1) (row {row}: "
                            f"{values.iloc[row]}); write percentages as fractions, e.g. 0.05")
        out[name] = values
    for name in by or ():
        if name not in df.columns:
            raise UserError(f"--by column {name!r} is missing; columns are: {', '.join(map(str, df.columns))}")
        if df[name].isna().any():
            row = int(np.flatnonzero(df[name].isna().to_numpy())[0])
            raise UserError(f"--by column {name!r} is empty at row {row}; every run needs a {name}")
        out[name] = df[name].to_numpy()
    return out.reset_index(drop=True)


def split_groups(table: pd.DataFrame, by: Sequence[str] | None) -> list[tuple[dict | None, pd.DataFrame]]:
    if not by:
        return [(None, table)]
    groups = []
    for key, part in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        # The index is kept: it is each row's position in the checked table (check_table resets it).
        groups.append(({k: _plain(v) for k, v in zip(by, key, strict=True)}, part))
    return groups


def _plain(value):
    return value.item() if hasattr(value, "item") else value
