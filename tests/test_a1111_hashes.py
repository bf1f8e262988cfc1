"""The short hashes A1111 writes, computed as A1111 computes them."""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import save_file

from ldm_cli.files.a1111_hashes import (
    addnet_sha256, embedding_short_hash, hashes_field, lora_short_hash, model_short_hash, old_model_hash, parse_hashes_field,
)


def test_addnet_hash_skips_the_header_so_metadata_does_not_change_it(tmp_path):
    tensors = {"a.lora_down.weight": torch.arange(12.0).reshape(3, 4)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"ss_network_dim": "3"})
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"ss_network_dim": "3", "note": "edited"})
    data = (tmp_path / "x.safetensors").read_bytes()
    payload = data[8 + int.from_bytes(data[:8], "little"):]
    assert addnet_sha256(tmp_path / "x.safetensors") == hashlib.sha256(payload).hexdigest()
    assert addnet_sha256(tmp_path / "y.safetensors") == addnet_sha256(tmp_path / "x.safetensors")
    assert addnet_sha256(tmp_path / "x.safetensors") != hashlib.sha256(data).hexdigest()
    assert lora_short_hash(tmp_path / "x.safetensors") == hashlib.sha256(payload).hexdigest()[:12]


def test_kohya_recorded_hash_is_preferred_as_a1111_does(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "k.safetensors"), metadata={"sshs_model_hash": "abcdef0123456789" * 4})
    assert lora_short_hash(tmp_path / "k.safetensors") == "abcdef012345"


def test_whole_file_hashes_and_the_old_model_hash(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(bytes(range(256)) * 5000)  # 1.28 MB: past the 1 MiB offset the old hash reads from
    data = path.read_bytes()
    assert model_short_hash(path) == hashlib.sha256(data).hexdigest()[:10]
    assert embedding_short_hash(path) == hashlib.sha256(data).hexdigest()[:12]
    assert old_model_hash(path) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_hashes_field_round_trip():
    text = hashes_field([("style: v2", "1a2b3c4d5e6f"), ("detail,x", "0f0f0f0f0f0f")])
    assert text == "style v2: 1a2b3c4d5e6f, detailx: 0f0f0f0f0f0f"
    assert parse_hashes_field(text) == {"style v2": "1a2b3c4d5e6f", "detailx": "0f0f0f0f0f0f"}
