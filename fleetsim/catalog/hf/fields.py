"""Reading the fields of a Hugging Face config.json: family defaults, types, one-line errors."""

from __future__ import annotations

import builtins
from typing import Any

from fleetsim.catalog.names import display
from fleetsim.errors import CatalogError, shown
from fleetsim.spec.architecture import MAX_ARCH_INT, MAX_LAYERS

MISSING = object()

#: Characters of a model's name shown in a message (a config.json is named after its folder).
NAME_CHARS = 60

# Keys under which multimodal configs nest their language model.
NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config", "text_model_config")
# Sub-configs of other towers: never merged into the language-model fields.
OTHER_TOWERS = ("vision_config", "audio_config")

_DTYPES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    # Full-precision checkpoints (mamba-*-hf ship fp32) are served at 16 bit.
    "float32": "bf16",
    "float": "bf16",
}


class HfConfig:
    """The language-model fields of a config (a nested text config merged over the top level),
    with the defaults of the family's transformers config class for fields a file leaves out.

    Every integer read is bounded: at least ``minimum`` and at most what the Architecture spec
    holds (``MAX_ARCH_INT``; layer counts ``MAX_LAYERS``), so nothing built from a config (per-layer
    lists, parameter tallies) can grow without bound. ``name`` is the model's name as messages
    show it (capped)."""

    def __init__(self, raw: dict, name: str, model_type: str, defaults: dict[str, Any]):
        self.name = display(name, NAME_CHARS)
        self.raw = raw
        self.fields = merged_fields(raw)
        self.model_type = model_type
        self.defaults = defaults

    def has(self, key: str) -> bool:
        return self.fields.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.fields.get(key)
        if value is None:
            value = self.defaults.get(key, default)
        return value

    def int(
        self, *keys: str, default: Any = MISSING, minimum: builtins.int = 1, maximum: builtins.int = MAX_ARCH_INT
    ) -> builtins.int:
        """The first of ``keys`` that is set, as an integer from minimum to maximum."""
        for key in keys:
            value = self.get(key)
            if value is not None:
                return self.check_int(key, value, minimum, maximum)
        if default is not MISSING:
            return default
        also = f" (also looked for {', '.join(keys[1:])})" if len(keys) > 1 else ""
        raise CatalogError(
            f"{self.name}: config field '{keys[0]}' is missing{also}; "
            f"a {self.model_type} config needs it as an integer >= {minimum}"
        )

    def layer_count(self, *keys: str) -> builtins.int:
        """The number of layers (the first of ``keys`` set), 1 to MAX_LAYERS: read before any
        per-layer list is built."""
        return self.int(*keys, maximum=MAX_LAYERS)

    def check_int(
        self, key: str, value: Any, minimum: builtins.int = 1, maximum: builtins.int = MAX_ARCH_INT
    ) -> builtins.int:
        valid = f"an integer >= {minimum}" if maximum == MAX_ARCH_INT else f"an integer from {minimum} to {maximum:,}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, f"it must be {valid}, not {_kind(value)}")
        if value < minimum:
            raise self.fail(key, value, f"it must be {valid}")
        if value > maximum:
            raise self.fail(key, value, f"it must be an integer from {minimum} to {maximum:,}")
        return value

    def optional_int(self, key: str, minimum: builtins.int = 1) -> builtins.int | None:
        value = self.get(key)
        return None if value is None else self.check_int(key, value, minimum)

    def index_set(self, key: str) -> set[builtins.int]:
        """A set of layer indices (``mlp_only_layers``): absent is empty; otherwise a list of
        integers. Indices outside the model select no layer."""
        value = self.get(key)
        if value is None:
            return set()
        if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            raise self.fail(key, _short(value), "it must be a list of layer indices (integers)")
        return set(value)

    def int_list(self, key: str, length: builtins.int, minimum: builtins.int = 0) -> list[builtins.int] | None:
        """A per-layer list of integers (None when the field is absent)."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != length:
            raise self.fail(key, _short(value), f"it must list one integer for each of the {length} layers")
        return [self.check_int(f"{key}[{i}]", v, minimum) for i, v in enumerate(value)]

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.get(key, default)
        if isinstance(value, str):  # some hand-written configs quote booleans
            return value.strip().lower() == "true"
        return bool(value)

    def fail(self, key: str, value: Any, valid: str) -> CatalogError:
        """One line naming the field, its value (capped) and what would be valid."""
        return CatalogError(f"{self.name}: config field '{display(key, 60)}' = {shown(value)} is not valid; {valid}")

    def tied_embeddings(self) -> bool:
        return self.flag("tie_word_embeddings", True)

    def native_dtype(self) -> str:
        quant = self.fields.get("quantization_config")
        if isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "fp8":
            return "fp8"
        dtype = self.fields.get("torch_dtype") or self.fields.get("dtype") or "bfloat16"
        return _DTYPES.get(str(dtype).replace("torch.", ""), "bf16")

    def max_context(self, *keys: str) -> builtins.int | None:
        for key in keys:
            value = self.get(key)
            if value is not None:
                return self.check_int(key, value)
        return None

    def layer_types(self, n_layers: builtins.int, valid: tuple[str, ...], key: str = "layer_types") -> list[str] | None:
        """A per-layer list of type names (None when absent), each one of ``valid``."""
        types = self.fields.get(key)
        if types is None:
            return None
        if isinstance(types, str):  # a pattern string, one character a layer (Nemotron-H)
            types = list(types)
        if not isinstance(types, list) or len(types) != n_layers:
            size = len(types) if isinstance(types, list) else type(types).__name__
            raise CatalogError(
                f"{self.name}: config field '{key}' has {size} entries; it must list "
                f"one type for each of the {n_layers} layers"
            )
        for i, kind in enumerate(types):
            if kind not in valid:
                raise self.fail(f"{key}[{i}]", kind, "valid: " + " or ".join(repr(v) for v in valid))
        return list(types)


def merged_fields(raw: dict) -> dict:
    """Top-level fields with the nested language-model block (if any) laid over them."""
    merged = {k: v for k, v in raw.items() if k not in NESTED_TEXT_KEYS and k not in OTHER_TOWERS}
    for key in NESTED_TEXT_KEYS:
        nested = raw.get(key)
        if isinstance(nested, dict):
            merged.update(nested)
            break
    return merged


def _short(value: Any) -> Any:
    """A value fit for a one-line message: long lists are summarised, never echoed whole."""
    if isinstance(value, list) and len(value) > 8:
        return _Summary(f"<list of {len(value):,}>")
    return value


class _Summary(str):
    """A stand-in for a value, shown as it reads (no quotes)."""

    def __repr__(self) -> str:
        return str(self)


def _kind(value: Any) -> str:
    """What a value is, for 'not <kind>': 'a string', 'a float', 'a list', 'null'."""
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", float: "a float", list: "a list"}
    return names.get(type(value), "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}")
