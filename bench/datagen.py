"""Synthetic raw CSV for benchmarks: the real sample resampled to N rows, with noise.

``generate(spec, sample, n, seed, out_dir)`` draws N rows (with replacement) from the
sample CSV, jitters the numeric columns a little (additive noise scaled by the column's
spread; a non-negative value stays non-negative), keeps categories and empty fields as
they are, and injects a small share of bad rows so that every quarantine path of the
clean job runs:

- ``unparseable``: a token such as ``n/a`` in a numeric column;
- ``rule``: a value that breaks one of the spec's simple rules (``col >= k`` / ``col > k``);
- ``null_label``: an empty field in a column the label expression reads;
- ``extra_field`` / ``missing_field``: a line with one field too many / too few.

Everything is vectorised with numpy and pyarrow (lines are joined in Arrow and written
straight from the Arrow buffer), so 5M rows take seconds. The file is cached under
``out_dir`` by (N, seed, generator version): a rerun reuses it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec

GENERATOR_VERSION = 2
BAD_KINDS = ("unparseable", "rule", "null_label", "extra_field", "missing_field")
UNPARSEABLE_TOKENS = ("n/a", "abc", "1.2.3", "--")
CHUNK_ROWS = 500_000
_SIMPLE_RULE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|>)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Generated:
    """A generated file and what was injected into it."""

    path: Path
    rows: int
    seed: int
    injected: dict[str, int]
    cached: bool


def _decimals(values: pa.Array) -> int:
    """Most decimals written in a string column (0 for integers), at most 9."""
    frac = pc.extract_regex(values, r"\.(?P<d>\d*)$")
    if frac.null_count == len(frac):
        return 0
    lengths = pc.utf8_length(pc.struct_field(frac, [0]))
    return int(min(9, pc.max(lengths).as_py() or 0))


def _referenced(expression: str, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if re.search(rf"\b{re.escape(c)}\b", expression)]


def jitter_columns(spec: DatasetSpec) -> list[str]:
    """Double columns that get noise: numeric features and columns the label or rules read."""
    wanted = set(spec.numeric_features)
    wanted.update(_referenced(spec.label_expression, spec.columns))
    for rule in spec.rules:
        wanted.update(_referenced(rule.expression, spec.columns))
    return [c for c, t in spec.schema if t == "double" and c in wanted]


def _csv_field(values: pa.Array) -> pa.Array:
    """Quote string values that need it, as a CSV writer would."""
    needs = pc.match_substring_regex(values, r'[",\n\r]')
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


class _Sampler:
    """Source columns and per-column facts, prepared once."""

    def __init__(self, spec: DatasetSpec, sample: Path) -> None:
        names = list(spec.columns)
        table = pacsv.read_csv(
            sample,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if spec.header else 0),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        self.spec = spec
        self.n_source = table.num_rows
        self.strings = {c: table.column(c).combine_chunks() for c in names}
        self.jitter: dict[str, tuple[np.ndarray, float, int]] = {}
        for c in jitter_columns(spec):
            s = self.strings[c]
            values = pc.cast(pc.if_else(pc.equal(s, ""), None, s), pa.float64(), safe=False)
            arr = values.to_numpy(zero_copy_only=False)
            finite = arr[np.isfinite(arr)]
            std = float(finite.std()) if finite.size else 0.0
            self.jitter[c] = (arr, 0.05 * std, _decimals(s))
        numeric = [c for c, t in spec.schema if t != "string"]
        self.unparseable_cols = numeric
        self.rule_targets: list[tuple[str, float]] = []
        for rule in spec.rules:
            m = _SIMPLE_RULE.match(rule.expression)
            if m:
                self.rule_targets.append((m.group(1), float(m.group(3))))
        self.label_cols = _referenced(spec.label_expression, spec.columns)

    def chunk(self, n: int, rng: np.random.Generator, bad_share: float) -> tuple[pa.Array, dict]:
        idx = rng.integers(0, self.n_source, size=n)
        idx_arr = pa.array(idx)
        cols: dict[str, pa.Array] = {}
        for c, s in self.strings.items():
            if c in self.jitter:
                base, scale, decimals = self.jitter[c]
                x = base[idx]
                noisy = x + rng.normal(0.0, scale, size=n) if scale > 0 else x.copy()
                # Zeros stay zero (they are real values, e.g. no tip); signs are kept.
                noisy = np.where(x == 0, 0.0, noisy)
                noisy = np.where(x > 0, np.maximum(noisy, 0.0), noisy)
                noisy = np.round(noisy, decimals)
                if decimals == 0:
                    ints = np.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
                    text = pc.cast(pa.array(ints, mask=np.isnan(x)), pa.string())
                else:
                    text = pc.cast(pa.array(noisy, mask=np.isnan(x)), pa.string())
                cols[c] = pc.fill_null(text, "")
            else:
                cols[c] = _csv_field(pc.take(s, idx_arr))

        injected = dict.fromkeys(BAD_KINDS, 0)
        n_bad = int(round(n * bad_share))
        bad_rows = rng.choice(n, size=n_bad, replace=False) if n_bad else np.empty(0, np.int64)
        kinds = rng.integers(0, len(BAD_KINDS), size=n_bad)
        line_edits: dict[str, np.ndarray] = {}
        for k, kind in enumerate(BAD_KINDS):
            rows = bad_rows[kinds == k]
            if rows.size == 0:
                continue
            if kind == "unparseable" and self.unparseable_cols:
                which = rng.integers(0, len(self.unparseable_cols), size=rows.size)
                for j, c in enumerate(self.unparseable_cols):
                    sel = rows[which == j]
                    tokens = [UNPARSEABLE_TOKENS[i] for i in rng.integers(0, 4, size=sel.size)]
                    cols[c] = _replace(cols[c], sel, tokens)
            elif kind == "rule" and self.rule_targets:
                which = rng.integers(0, len(self.rule_targets), size=rows.size)
                for j, (c, bound) in enumerate(self.rule_targets):
                    sel = rows[which == j]
                    values = np.round(bound - 1.0 - rng.uniform(0, 10, size=sel.size), 2)
                    cols[c] = _replace(cols[c], sel, [repr(float(v)) for v in values])
            elif kind == "null_label" and self.label_cols:
                which = rng.integers(0, len(self.label_cols), size=rows.size)
                for j, c in enumerate(self.label_cols):
                    sel = rows[which == j]
                    cols[c] = _replace(cols[c], sel, [""] * sel.size)
            elif kind in ("extra_field", "missing_field"):
                line_edits[kind] = rows
            else:
                continue
            injected[kind] = int(rows.size)

        names = list(self.spec.columns)
        if "missing_field" in line_edits:
            # Drop the last field: join that row without it.
            last = names[-1]
            cols[last] = _replace(cols[last], line_edits["missing_field"], None)
        lines = pc.binary_join_element_wise(*(cols[c] for c in names), ",", null_handling="skip")
        if "extra_field" in line_edits:
            rows = line_edits["extra_field"]
            extra = pc.binary_join_element_wise(pc.take(lines, pa.array(rows)), "extra", ",")
            lines = _replace(lines, rows, extra.to_pylist())
        return pc.binary_join_element_wise(lines, "", "\n"), injected


def _replace(values: pa.Array, rows: np.ndarray, new: list[Any] | None) -> pa.Array:
    """``values`` with ``values[rows] = new`` (``None``: nulls)."""
    if rows.size == 0:
        return values
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    order = np.argsort(rows)  # replace_with_mask fills masked slots in row order
    if new is None:
        replacement = pa.nulls(rows.size, pa.string())
    else:
        replacement = pa.array([new[i] for i in order], pa.string())
    return pc.replace_with_mask(values, pa.array(mask), replacement)


def _write_lines(fh: Any, lines: pa.Array) -> None:
    """Write a string array whose values each end in a newline, straight from its buffer."""
    arr = lines.cast(pa.large_string()) if lines.type != pa.large_string() else lines
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    data = memoryview(arr.buffers()[2])
    fh.write(data[int(offsets[0]) : int(offsets[-1])])


def cache_path(out_dir: Path, spec: DatasetSpec, n: int, seed: int) -> Path:
    return Path(out_dir) / f"{spec.name}_n{n}_s{seed}_v{GENERATOR_VERSION}.csv"


def generate(
    spec: DatasetSpec,
    sample: Path,
    n: int,
    seed: int,
    out_dir: Path,
    *,
    bad_share: float = 0.002,
) -> Generated:
    """Write (or reuse) ``out_dir/<dataset>_n<N>_s<seed>_v<version>.csv``; see the module doc."""
    path = cache_path(out_dir, spec, n, seed)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("bad_share") == bad_share:
            return Generated(path, n, seed, meta["injected"], cached=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sampler = _Sampler(spec, Path(sample))
    injected = dict.fromkeys(BAD_KINDS, 0)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            if spec.header:
                fh.write((",".join(spec.columns) + "\n").encode("utf-8"))
            for i, start in enumerate(range(0, n, CHUNK_ROWS)):
                rng = np.random.default_rng([seed, i])
                lines, counts = sampler.chunk(min(CHUNK_ROWS, n - start), rng, bad_share)
                _write_lines(fh, lines)
                for k, v in counts.items():
                    injected[k] += v
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta_path.write_text(
        json.dumps({"rows": n, "seed": seed, "bad_share": bad_share, "injected": injected}),
        encoding="utf-8",
    )
    return Generated(path, n, seed, injected, cached=False)
