"""A1111's extra-network tags: found by `<(\\w+):([^>]+)>`, removed from the CLIP text, weights as A1111 reads them."""

from __future__ import annotations

import pytest

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.prompts.prompt_tags import Tag, extract_network_tags, format_lora_tag, without_network_tags


def test_a_lora_tag_is_removed_and_parsed():
    clean, tags = extract_network_tags("a cat <lora:style:0.7>, detailed")
    assert clean == "a cat , detailed"
    assert tags == [Tag("lora", "style", 0.7, None, None, "<lora:style:0.7>")]
    assert tags[0].unet_scale == 0.7 and tags[0].is_lora


def test_weight_defaults_to_one_and_lyco_is_a_lora():
    clean, tags = extract_network_tags("<lyco:my_net>a dog")
    assert clean == "a dog"
    assert tags[0].kind == "lyco" and tags[0].name == "my_net" and tags[0].weight == 1.0 and tags[0].is_lora


def test_positional_and_named_multipliers_as_a1111():
    tags = extract_network_tags("<lora:a:0.5:0.25> <lora:b:te=0.4:unet=0.2:dyn=8> <lora:c:1:2:16>")[1]
    assert (tags[0].weight, tags[0].unet_weight) == (0.5, 0.25)
    assert (tags[1].weight, tags[1].unet_weight, tags[1].dyn) == (0.4, 0.2, 8)
    assert (tags[2].weight, tags[2].unet_weight, tags[2].dyn) == (1.0, 2.0, 16)


def test_other_kinds_are_removed_too_and_reported():
    clean, tags = extract_network_tags("x <hypernet:h:0.5> y")
    assert clean == "x  y" and tags[0].kind == "hypernet" and not tags[0].is_lora


def test_text_that_is_not_a_tag_stays():
    for text in ("<lora:>", "a <my-net:x> b", "a < b > c", "(red:1.2)", "a <lora:x"):
        assert extract_network_tags(text) == (text, [])


def test_several_tags_in_order_and_negative_weights():
    clean, tags = extract_network_tags("<lora:a:1><lora:b:-0.5>z")
    assert clean == "z" and [(t.name, t.weight) for t in tags] == [("a", 1.0), ("b", -0.5)]


@pytest.mark.parametrize("text", ["<lora:x:abc>", "<lora:x:1:y>", "<lora:te=1>", "<lora:x:dyn=big>"])
def test_a_bad_number_is_a_usage_error_naming_the_tag(text):
    with pytest.raises(UsageError, match="lora"):
        extract_network_tags(text)


def test_helpers():
    assert without_network_tags("a <lora:s:1> b") == "a  b"
    assert format_lora_tag("style", 0.7) == "<lora:style:0.7>" and format_lora_tag("s", 1.0) == "<lora:s:1>"
