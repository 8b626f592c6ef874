"""Output: JSON that parses, output locations checked before any work, files and folders written whole.

JSON. Every `--json` and every written .json goes through `json_text` / `write_json`:
non-finite floats become null (never NaN or Infinity, which strict JSON readers reject), numpy
scalars become plain numbers, and `json.dumps(..., allow_nan=False)` makes a regression fail
loudly. Where a value is null for a known reason the document says why: a sibling
`<key>_reason` next to it and a top-level `null_fields` mapping {dotted.path: reason}.

Locations. `check_output_dir` / `check_output_file` raise SpecError (one line: the option, the
path, what is wrong) for an existing file where a folder is wanted (or the reverse), a path under
a file, or a place that cannot be written; commands call them before they simulate.

Whole writes. `output_directory` yields a temporary sibling folder; when the block ends without
an error it writes manifest.json last (files, sizes, fleetsim version, scenario hash,
completed: true) and renames the folder into place, replacing an earlier fleetsim folder there as
a whole (an atomic exchange on Linux). A reader never sees files of two runs mixed, nor a folder
without its manifest. `replacing` does the same for one file.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from fleetsim.errors import SpecError

__all__ = [
    "MANIFEST",
    "check_output_dir",
    "check_output_file",
    "json_text",
    "output_directory",
    "output_file",
    "plain",
    "replacing",
    "scenario_sha256",
    "summary_null_reasons",
    "write_bytes",
    "write_json",
]

MANIFEST = "manifest.json"


# --------------------------------------------------------------------------- JSON
def _non_finite_reason(x: float) -> str:
    if math.isnan(x):
        return "undefined (NaN)"
    return "not finite (infinite: a division by zero, or an input value too large to compute with)"


def plain(obj: Any, nulls: dict[str, str] | None = None, path: str = "") -> Any:
    """obj as plain JSON values: dict keys as strings, tuples as lists, numpy scalars as Python
    numbers, NaN/inf as None (each recorded in `nulls` as {dotted.path: reason})."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v, nulls, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if hasattr(obj, "model_dump"):  # a pydantic spec
        return plain(obj.model_dump(mode="json"), nulls, path)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        obj = obj.tolist()
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v, nulls, f"{path}.{i}" if path else str(i)) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if nulls is not None:
            nulls[path] = _non_finite_reason(obj)
        return None
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj.__class__.__name__ in ("NAType", "NaTType"):  # pandas missing markers
        if nulls is not None:
            nulls[path] = "undefined (missing)"
        return None
    raise TypeError(f"{path or 'value'}: {type(obj).__name__} is not a JSON value")


def _leaf(doc: Any, dotted: str) -> tuple[Any, str] | None:
    """(the mapping holding the leaf, the leaf's key), or None where the path is not a mapping entry."""
    parts = dotted.split(".")
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return (node, parts[-1]) if isinstance(node, dict) and parts[-1] in node else None


def json_text(
    obj: Any, *, reasons: Mapping[str, str] | None = None, siblings: bool = True, indent: int | None = 2
) -> str:
    """The one JSON writer. `reasons` ({dotted.path: why}) explain values that are null; for a
    top-level mapping every explained null gets a sibling `<key>_reason` (unless `siblings` is
    False or that key exists) and the document a `null_fields` entry listing them all."""
    nulls: dict[str, str] = {}
    doc = plain(obj, nulls)
    if isinstance(doc, dict):
        for path, why in (reasons or {}).items():
            at = _leaf(doc, path)
            if at is not None and at[0][at[1]] is None:
                nulls[path] = why
        if nulls:
            if siblings:
                for path, why in nulls.items():
                    at = _leaf(doc, path)
                    if at is not None and f"{at[1]}_reason" not in at[0]:
                        at[0][f"{at[1]}_reason"] = why
            doc["null_fields"] = dict(sorted(nulls.items()))
    return json.dumps(doc, indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any, **kw: Any) -> Path:
    """json_text(obj, **kw) written whole to path (a temporary sibling renamed over it)."""
    return write_bytes(path, (json_text(obj, **kw) + "\n").encode())


# --------------------------------------------------------------------------- why a run summary holds null
def summary_null_reasons(summary: Mapping[str, Any]) -> dict[str, str]:
    """{dotted.path: reason} for the values of a run summary (fleetsim.metrics.summarize) that are
    null because they are undefined for this run."""
    reasons: dict[str, str] = {}
    requests = summary.get("requests") or {}
    throughput = summary.get("throughput") or {}
    completed = requests.get("completed", 0)
    out_tps = throughput.get("output_tokens_per_s") or 0.0
    in_tps = throughput.get("input_tokens_per_s") or 0.0
    none_done = "no request completed in the measured window (after run.warmup_s)"
    for metric in ("ttft", "tpot", "e2e"):
        for stat in ("mean", "p50", "p90", "p99"):
            why = none_done
            if metric == "tpot" and completed:
                why = "no completed request has two or more output tokens (TPOT is the time between them)"
            reasons[f"latency_s.{metric}.{stat}"] = why
    slo = summary.get("slo") or {}
    for key in slo:
        if key.startswith("ttft_p") and key.endswith("_s"):
            reasons[f"slo.{key}"] = none_done
    reasons["kv_cache.capacity_tokens_per_replica"] = "the model keeps no KV cache (a fixed state per sequence)"
    usd_per_hour = (summary.get("cost") or {}).get("usd_per_hour")
    price = "cost.usd_per_hour is not finite" if usd_per_hour is None or not math.isfinite(usd_per_hour) else None
    reasons["power.joules_per_output_token"] = "no output tokens were generated"
    reasons["cost.usd_per_million_output_tokens"] = price or (
        "no output tokens in the measured window" if not out_tps else "undefined"
    )
    reasons["cost.usd_per_million_tokens"] = price or (
        "no tokens in the measured window" if not (out_tps + in_tps) else "undefined"
    )
    reasons["cost.usd_per_million_input_tokens_by_gpu_time"] = price or "no input tokens in the measured window"
    reasons["cost.usd_per_million_output_tokens_by_gpu_time"] = price or "no output tokens in the measured window"
    return reasons


def scenario_sha256(scenario: Any) -> str | None:
    """sha256 of a scenario's content (canonical JSON of the validated spec)."""
    if scenario is None:
        return None
    text = json.dumps(plain(scenario), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- locations
def _shown(p: Path) -> str:
    return str(p) if str(p) else "."


def _nearest_existing(p: Path) -> Path:
    for candidate in (p, *p.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_parent_chain(p: Path, option: str) -> Path:
    """The nearest folder that exists above p (SpecError where that is a file)."""
    above = _nearest_existing(p.parent if str(p.parent) else Path("."))
    if not above.is_dir():
        raise SpecError(
            f"{option} {_shown(p)}: '{above}' is a file, so nothing can be written under it; give a path in a folder"
        )
    return above


def _check_writable(folder: Path, p: Path, option: str) -> None:
    """Create and remove a probe in folder (permissions, read-only file systems, quotas)."""
    try:
        probe = tempfile.mkdtemp(dir=folder, prefix=".fleetsim-probe-")
        os.rmdir(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise SpecError(
            f"{option} {_shown(p)}: cannot write in '{_shown(folder)}' ({why}); give a writable location"
        ) from None


def check_output_dir(path: str | Path, option: str = "--out", *, replace: bool = True) -> Path:
    """Check, before any work, that a folder can be written at path. replace=True (a run, a plan):
    the folder will be replaced as a whole, so an existing one must be empty or a fleetsim output
    folder (it holds manifest.json). replace=False (a resumable sweep): files are added to it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SpecError(f"{option} {_shown(p)}: is a file, not a folder; give a folder path (it is created)")
    above = _check_parent_chain(p, option)
    _check_writable(p if (p.is_dir() and not replace) else above, p, option)
    if replace and p.is_dir() and not (p / MANIFEST).is_file() and any(p.iterdir()):
        raise SpecError(
            f"{option} {_shown(p)}: the folder exists, is not empty and was not written by fleetsim "
            f"(no {MANIFEST}); give a new or empty folder"
        )
    return p


def check_output_file(path: str | Path, option: str = "-o") -> Path:
    """Check, before any work, that a file can be written at path."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"{option} {_shown(p)}: is a folder; give a file path (e.g. {_shown(p / 'report.html')})")
    _check_writable(_check_parent_chain(p, option), p, option)
    return p


# --------------------------------------------------------------------------- whole writes
@functools.cache
def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_file(final: Path) -> Path:
    """An empty sibling of final with the mode a plain open() would give it (mkstemp's is 0600)."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=f".partial{final.suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of path to write; renamed over path when the block ends without error."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_file(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def output_file(path: str | Path, option: str = "-o") -> Iterator[Path]:
    """check_output_file, then `replacing`."""
    check_output_file(path, option)
    with replacing(path) as tmp:
        yield tmp


def _version() -> str:
    from fleetsim import __version__

    return str(__version__)


def _write_manifest(folder: Path, scenario: Any) -> None:
    files = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            files.append({"path": f.relative_to(folder).as_posix(), "bytes": f.stat().st_size})
    manifest = {
        "completed": True,
        "fleetsim_version": _version(),
        "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scenario_sha256": scenario_sha256(scenario),
        "files": files,
    }
    write_json(folder / MANIFEST, manifest)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(tmp: Path, final: Path) -> None:
    if not final.exists():
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if not final.is_dir():  # pragma: no cover - a race with another writer
                raise
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the earlier folder
        return
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
    os.rename(final, old / "x")
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_directory(path: str | Path, option: str = "--out", *, scenario: Any = None) -> Iterator[Path]:
    """A temporary sibling folder to write into; when the block ends without error, manifest.json
    is written last and the folder renamed into place (replacing an earlier one as a whole).
    On an error or an interrupt the temporary folder is removed and path is left as it was."""
    final = Path(path)
    check_output_dir(final, option)
    if final.is_symlink():  # replace the folder it points to, not the link
        final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _write_manifest(tmp, scenario)
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
