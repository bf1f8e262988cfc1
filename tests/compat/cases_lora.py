"""LoRA-family layouts people have, what `ldm generate --lora` does with each, and what diffusers'
`load_lora_weights` does with the same file: rows of the README compatibility table.

tests/compat/test_lora_layouts.py builds each row with random weights and real key names on the tiny
model and checks the `ldm` column: "same pixels as diffusers" is within 1/255 of diffusers' pipeline
on the same file and seed; where diffusers cannot load a file, the oracle named in the row (diffusers
on a mathematically equal file, or peft's own LoHa/LoKr/DoRA layers holding the same tensors).
"""

SAME = "applied, same pixels as diffusers"

CASES = [
    {"name": "kohya LoRA, UNet + text encoder", "file": "`lora_unet_…`, `lora_te_text_model_encoder_layers_N_…` `.lora_down/.lora_up.weight` + `alpha`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "peft/diffusers LoRA, UNet + text encoder", "file": "`unet.….lora_A/lora_B.weight`, `text_encoder.text_model.….lora_A/lora_B.weight`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "kohya LoRA, LDM UNet names", "file": "`lora_unet_input_blocks_1_1_…`, `…_in_layers_2` (resnets), `…_op` (downsamplers)",
     "ldm": SAME, "diffusers": "loads (with unet_config)"},
    {"name": "diffusers lora_linear_layer", "file": "`unet.….lora.down/up.weight`, `text_encoder.….lora_linear_layer.down/up.weight`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "diffusers attention processors", "file": "`unet.….attn1.processor.to_q_lora.down/up.weight` (`to_k/to_v/to_out_lora`)",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "diffusers lora_adapter_metadata", "file": "peft keys; `r`, `lora_alpha`, `alpha_pattern` in the header's `lora_adapter_metadata`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "LyCORIS LoCon (3x3 conv)", "file": "kohya keys; resnets `conv1/conv2` `lora_down` [r, in, 3, 3], `lora_up` [out, r, 1, 1]",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "LyCORIS LoCon with lora_mid (Tucker)", "file": "kohya keys + `lora_mid.weight` [r, r, 3, 3]",
     "ldm": "applied (diffusers cannot load it); same pixels as diffusers on the equal plain LoCon", "diffusers": "refuses"},
    {"name": "LyCORIS LoHa (+ Tucker conv)", "file": "`hada_w1_a/w1_b/w2_a/w2_b` (+ `hada_t1/t2` on convs) + `alpha`",
     "ldm": "applied (diffusers cannot load it); same pixels as peft's LoHa", "diffusers": "refuses"},
    {"name": "LyCORIS LoKr, full w1 and w2", "file": "`lokr_w1` + `lokr_w2` (+ `alpha`, ignored: scale 1)",
     "ldm": "applied (diffusers cannot load it); same pixels as peft's LoKr", "diffusers": "refuses"},
    {"name": "LyCORIS LoKr, w2 decomposed (+ t2)", "file": "`lokr_w1` + `lokr_w2_a/w2_b` (+ `lokr_t2` on convs) + `alpha`",
     "ldm": "applied (diffusers cannot load it); same pixels as peft's LoKr", "diffusers": "refuses"},
    {"name": "LyCORIS LoKr, w1 and w2 decomposed", "file": "`lokr_w1_a/w1_b` + `lokr_w2_a/w2_b` + `alpha`",
     "ldm": "applied (diffusers cannot load it); same pixels as peft's LoKr", "diffusers": "refuses"},
    {"name": "peft DoRA (lora_magnitude_vector)", "file": "`unet.….lora_A/lora_B.weight` + `….lora_magnitude_vector`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "LyCORIS DoRA (dora_scale)", "file": "kohya keys + `dora_scale` [out, 1]",
     "ldm": "applied (diffusers drops dora_scale); same pixels as peft's DoRA", "diffusers": "loads without dora_scale"},
    {"name": "SDXL LoRA", "file": "`lora_unet_input_blocks_…`, `lora_te1_`/`lora_te2_` (2048-dim cross-attention)",
     "ldm": "refused: an SDXL LoRA; use it with an SDXL model", "diffusers": "refuses"},
    {"name": "SD2 LoRA", "file": "kohya keys, 1024-dim cross-attention and text encoder",
     "ldm": "refused: a LoRA for SD2 models; use it with an SD2 model", "diffusers": "refuses"},
    {"name": "ldm finetune LoRA (diffusers format)", "file": "`unet.….lora_A/B.weight`, `text_encoder.text_model.….lora_A/B.weight`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "ldm finetune LoRA (kohya format)", "file": "`lora_unet_…`, `lora_te_text_model_encoder_layers_N_…` + `alpha`",
     "ldm": SAME, "diffusers": "loads"},
]
