"""The names people type: catalog names, aliases and Hugging Face repo ids, case, '-', '_' and
spaces ignored; an unknown name is one line naming the closest entries."""

from __future__ import annotations

import pytest

import fleetsim.catalog as catalog
from fleetsim.api import kv_report
from fleetsim.catalog import (
    clear_cache,
    gpu_entry,
    gpu_names,
    load_gpu,
    load_model,
    model_entry,
    model_names,
    resolve_model,
)
from fleetsim.catalog.names import build_index, normalize, suggestions
from fleetsim.errors import CatalogError

TYPED_GPUS = {
    "h100": "h100-sxm",
    "H100-SXM": "h100-sxm",
    "H100 SXM5 80GB": "h100-sxm",
    "h100_sxm5_80gb": "h100-sxm",
    "NVIDIA H100 80GB HBM3": "h100-sxm",  # what nvidia-smi prints
    "H100 PCIe 80GB": "h100-pcie",
    "a100": "a100-80gb",
    "GB200 NVL72": "gb200",
    "amd instinct mi300x": "mi300x",
}
TYPED_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b",
    "Meta-Llama-3-8B-Instruct": "llama-3-8b",  # a repo id's name alone
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "deepseek-ai/DeepSeek-R1": "deepseek-v3",  # R1 is DeepSeek-V3's architecture
    "LLAMA_3_8B": "llama-3-8b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b",
}


@pytest.mark.parametrize(("typed", "name"), sorted(TYPED_GPUS.items()))
def test_gpu_names_people_type(typed, name):
    assert load_gpu(typed).name == name
    assert gpu_entry(typed)["name"] == name


@pytest.mark.parametrize(("typed", "name"), sorted(TYPED_MODELS.items()))
def test_model_names_people_type(typed, name):
    arch = load_model(typed)
    assert arch.name == name
    assert arch.layers == load_model(name).layers
    assert model_entry(typed)["name"] == name


def test_every_alias_in_the_catalog_resolves_to_its_entry():
    for kind, names, entry, load in (
        ("model", model_names(), model_entry, load_model),
        ("gpu", gpu_names(), gpu_entry, load_gpu),
    ):
        for name in names:
            aliases = entry(name).get("aliases")
            assert aliases, f"{kind} {name} has no aliases"
            for alias in aliases:
                assert load(alias).name == name, (kind, alias)


def test_how_a_name_was_resolved():
    assert resolve_model("llama-3-8b").how == "name"
    assert resolve_model("Llama 3 8B").how == "name"  # the name, typed another way
    found = resolve_model("meta-llama/Meta-Llama-3-8B")
    assert (found.how, found.name) == ("alias", "llama-3-8b")


def test_matching_ignores_case_dashes_underscores_and_spaces():
    assert normalize("H100 SXM5_80-GB") == normalize("h100sxm580gb") == "h100sxm580gb"


def test_two_entries_claiming_one_name_is_an_error():
    with pytest.raises(CatalogError, match=r"'h100' is claimed by both 'h100-pcie' and 'h100-sxm'"):
        build_index("gpu", {"h100-sxm": ["h100"], "h100-pcie": ["H100"]})
    # a repo id's name alone is claimed too
    with pytest.raises(CatalogError, match="claimed by both"):
        build_index("model", {"a": ["org/Shared-Name"], "b": ["shared_name"]})


def test_an_ambiguous_alias_fails_the_catalog_load(monkeypatch):
    real_entry = catalog._entry

    def entry(kind, name):
        data = real_entry(kind, name)
        if (kind, name) == ("gpus", "h100-pcie"):
            data["aliases"] = [*data["aliases"], "h100"]  # also claimed by h100-sxm
        return data

    monkeypatch.setattr(catalog, "_entry", entry)
    clear_cache()
    try:
        with pytest.raises(CatalogError, match=r"catalog gpus: the name 'h100' is claimed by both"):
            load_gpu("H100-SXM")
    finally:
        monkeypatch.undo()
        clear_cache()
    assert load_gpu("h100").name == "h100-sxm"


def test_a_misspelt_model_is_one_line_with_the_closest_names():
    with pytest.raises(CatalogError) as caught:
        load_model("llama-3.1-8bb")
    line = str(caught.value)
    assert line.startswith("model 'llama-3.1-8bb' is unknown; did you mean: llama-3.1-8b")
    assert line.endswith("? (fleetsim models lists all)")
    assert "\n" not in line
    assert len(line.split("did you mean: ")[1].split(", ")) <= 3


def test_a_misspelt_gpu_names_the_closest_gpus():
    with pytest.raises(
        CatalogError, match=r"^gpu 'h1OO' is unknown; did you mean: h100-sxm.*\(fleetsim gpus lists all\)$"
    ):
        load_gpu("h1OO")


def test_an_unknown_hugging_face_id_is_not_a_file_error():
    # 'org/name' reads as a repo id: the did-you-mean line, never "no such file"
    with pytest.raises(
        CatalogError, match=r"^model 'meta-llama/Llama-3.1-8B-Instrukt' is unknown; did you mean: llama-3.1-8b"
    ):
        load_model("meta-llama/Llama-3.1-8B-Instrukt")


def test_names_that_read_as_files_say_no_such_file():
    for typed in ("missing/config.json", "./models/x.yaml", "/no/such/dir"):
        with pytest.raises(CatalogError, match="no such file"):
            load_model(typed)


def test_nothing_close_still_names_the_listing():
    with pytest.raises(CatalogError, match=r"^model 'zzzz' is unknown \(fleetsim models lists all\)$"):
        load_model("zzzz")


def test_suggestions_name_catalog_entries_once_each():
    index = build_index("gpu", {"h100-sxm": ["h100", "h100-sxm5"], "h200": ["h200-sxm"]})
    near = suggestions("h100-sxm6", index)
    assert near[0] == "h100-sxm"
    assert len(set(near)) == len(near)  # h100-sxm is close by its name and two aliases: named once


def test_kv_report_of_a_hugging_face_id_works_offline():
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 x (2 + 2) bytes
    report = kv_report("meta-llama/Llama-3.1-8B-Instruct", 1000)
    assert report["model"] == "llama-3.1-8b"
    assert report["bytes_per_sequence"] == 32 * 8 * 128 * 4 * 1000


def test_an_existing_path_is_read_when_no_entry_claims_the_name(tmp_path, monkeypatch):
    from pathlib import Path

    data = Path(__file__).parent / "data" / "llama-3-8b.config.json"
    folder = tmp_path / "org" / "my-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(data.read_text())
    monkeypatch.chdir(tmp_path)
    found = resolve_model("org/my-model")
    assert found.how == "path"
    assert load_model("org/my-model").name == "my-model"
