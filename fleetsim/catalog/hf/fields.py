"""Reading the fields of a Hugging Face config.json: family defaults, types, one-line errors."""

from __future__ import annotations

import builtins
from typing import Any

from fleetsim.errors import CatalogError

MISSING = object()

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
    with the defaults of the family's transformers config class for fields a file leaves out."""

    def __init__(self, raw: dict, name: str, model_type: str, defaults: dict[str, Any]):
        self.name = name
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

    def int(self, *keys: str, default: Any = MISSING, minimum: builtins.int = 1) -> builtins.int:
        """The first of ``keys`` that is set, as an integer >= minimum."""
        for key in keys:
            value = self.get(key)
            if value is not None:
                return self.check_int(key, value, minimum)
        if default is not MISSING:
            return default
        also = f" (also looked for {', '.join(keys[1:])})" if len(keys) > 1 else ""
        raise CatalogError(
            f"{self.name}: config field '{keys[0]}' is missing{also}; "
            f"a {self.model_type} config needs it as an integer >= {minimum}"
        )

    def check_int(self, key: str, value: Any, minimum: builtins.int = 1) -> builtins.int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CatalogError(
                f"{self.name}: config field '{key}' = {value!r} is not valid; it must be an integer >= {minimum}"
            )
        return value

    def optional_int(self, key: str, minimum: builtins.int = 1) -> builtins.int | None:
        value = self.get(key)
        return None if value is None else self.check_int(key, value, minimum)

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
        return CatalogError(f"{self.name}: config field '{key}' = {value!r} is not valid; {valid}")

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
        return f"<list of {len(value)}>"
    return value
