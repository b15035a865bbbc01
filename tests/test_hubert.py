"""HuBERT in Flax NNX against transformers' HubertModel, checkpoint readers, chunked extraction.

The equivalence tests build tiny random HubertModels with the torch-reference extra, save them
with save_pretrained (safetensors and pytorch_model.bin) and load them in jaxhead; they skip
without torch. The torch-free tests build checkpoints with safetensors' NumPy API.
"""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxhead.audio import checkpoints, hubert

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 4, 2),
    conv_kernel=(10, 4, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
LAYOUTS = {
    "base": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


def _torch_model(layout: str, seed: int = 0):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.HubertConfig(**TINY, **LAYOUTS[layout])
    model = transformers.HubertModel(config).eval()
    # Random init leaves LayerNorm/GroupNorm at identity and biases at zero; perturb every
    # parameter so that a transposed or misplaced weight cannot go unnoticed.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return torch, model


def _torch_outputs(torch, model, audio):
    with torch.no_grad():
        out = model(torch.from_numpy(audio), output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


@pytest.mark.torch
@pytest.mark.parametrize("layout", ["base", "large"])
@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_matches_transformers(tmp_path, layout, weights_file):
    torch, model = _torch_model(layout)
    model.save_pretrained(tmp_path, safe_serialization=weights_file == "model.safetensors")
    if weights_file == "pytorch_model.bin" and not (tmp_path / weights_file).is_file():
        # transformers >= 5 always writes safetensors; a .bin is what transformers 4's
        # save_pretrained(safe_serialization=False) wrote: torch.save of the state dict.
        (tmp_path / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / weights_file)
    assert (tmp_path / weights_file).is_file()

    ours = checkpoints.load_hubert(tmp_path)
    audio = np.random.default_rng(1).standard_normal((2, 3200)).astype(np.float32)
    ref_last, ref_hidden = _torch_outputs(torch, model, audio)
    last, hidden = ours(jax.numpy.asarray(audio))

    assert last.shape == ref_last.shape == (2, ours.config.num_output_steps(3200), 32)
    np.testing.assert_allclose(last, ref_last, atol=1e-4, rtol=1e-4)
    assert len(hidden) == len(ref_hidden) == TINY["num_hidden_layers"] + 1
    for ours_h, ref_h in zip(hidden, ref_hidden, strict=True):
        np.testing.assert_allclose(ours_h, ref_h, atol=1e-4, rtol=1e-4)


@pytest.mark.torch
def test_ctc_checkpoint_with_old_weight_norm_keys(tmp_path):
    """HubertForCTC ('hubert.' prefix, lm_head) saved with weight_g / weight_v key names."""
    torch, model = _torch_model("large", seed=3)
    transformers = pytest.importorskip("transformers")
    ctc = transformers.HubertForCTC(model.config).eval()
    ctc.hubert.load_state_dict(model.state_dict())
    state = {"hubert." + k: v for k, v in model.state_dict().items()}
    state["lm_head.weight"] = ctc.lm_head.weight.detach()
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value
    assert "hubert.encoder.pos_conv_embed.conv.weight_g" in renamed
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(model.config.to_json_string())

    ours = checkpoints.load_hubert(tmp_path)
    audio = np.random.default_rng(2).standard_normal((1, 2000)).astype(np.float32)
    ref_last, _ = _torch_outputs(torch, model, audio)
    np.testing.assert_allclose(ours(jax.numpy.asarray(audio))[0], ref_last, atol=1e-4)


@pytest.mark.torch
def test_torch_free_bin_reader_matches_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    big = torch.randn(6, 5, generator=generator)
    state = {
        "float": torch.randn(3, 4, generator=generator),
        "transposed_view": big.t(),  # non-contiguous strides into a shared storage
        "slice_view": big[2:4],  # storage offset
        "half": torch.randn(7, generator=generator).half(),
        "bf16": torch.randn(2, 3, generator=generator).bfloat16(),
        "int": torch.arange(5),
        "scalar": torch.tensor(2.5),
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "weights.bin"
    torch.save(state, path)
    ours = checkpoints.read_torch_state_dict(path)
    ref = torch.load(path, weights_only=True)
    assert set(ours) == set(ref)
    for key, value in ref.items():
        expected = value.detach().float().numpy() if key == "bf16" else value.detach().numpy()
        assert ours[key].shape == expected.shape, key
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)


def test_bin_reader_refuses_foreign_globals(tmp_path):
    import pickle
    import zipfile

    payload = pickle.dumps({"x": print}, protocol=2)  # a global that is not a tensor rebuild
    with zipfile.ZipFile(tmp_path / "evil.bin", "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(checkpoints.CheckpointError, match="refusing to load .*print"):
        checkpoints.read_torch_state_dict(tmp_path / "evil.bin")
    (tmp_path / "legacy.bin").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(checkpoints.CheckpointError, match="not a zip-format"):
        checkpoints.read_torch_state_dict(tmp_path / "legacy.bin")


def _numpy_checkpoint(folder, layout="large", num_hidden_layers=2, seed=0):
    """A checkpoint folder written without torch: random weights in Hugging Face key layout."""
    from safetensors.numpy import save_file

    config = hubert.HubertConfig(
        **{**TINY, "num_hidden_layers": num_hidden_layers}, **LAYOUTS[layout]
    )
    model = hubert.HubertModel(config, rngs=nnx.Rngs(seed))
    state = {}
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        key = checkpoints._hf_key(path)
        value = np.asarray(variable.value)
        value = (
            value.T if value.ndim == 2 else value.transpose(2, 1, 0) if value.ndim == 3 else value
        )
        state["hubert." + key] = np.ascontiguousarray(value)
    # Store the positional conv as a (new-style) weight-norm parametrisation of the same kernel.
    weight = state.pop("hubert.encoder.pos_conv_embed.conv.weight")
    norm = np.sqrt(np.sum(weight.astype(np.float64) ** 2, axis=(0, 1), keepdims=True))
    state["hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = norm.astype(
        np.float32
    )
    state["hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1"] = weight
    state["lm_head.weight"] = np.zeros((4, 32), np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / "model.safetensors")
    hf_config = dict(model_type="hubert", architectures=["HubertForCTC"], **TINY, **LAYOUTS[layout])
    hf_config["num_hidden_layers"] = num_hidden_layers
    (folder / "config.json").write_text(json.dumps(hf_config))
    return model
