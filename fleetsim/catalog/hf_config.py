"""The Hugging Face config.json reader; it lives in :mod:`fleetsim.catalog.hf` (one module per
family of models). This name stays importable."""

from fleetsim.catalog.hf import architecture_from_hf_config, supported_model_types, validation_message

__all__ = ["architecture_from_hf_config", "supported_model_types", "validation_message"]
