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

from jaxhead.audio import checkpoints, features, hubert

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
    transformers = pytest.importorskip("transformers")
    if layout == "large" and int(transformers.__version__.split(".")[0]) < 5:
        # transformers 4 returned the final-LayerNormed state as the last hidden state of the
        # pre-LN layout; jaxhead follows transformers 5 (the last layer's raw output).
        hidden = (*hidden[:-1], last)
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
        value = np.asarray(variable.get_value())
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


def test_load_hubert_without_torch_and_clear_errors(tmp_path):
    model = _numpy_checkpoint(tmp_path / "ckpt", layout="base")
    loaded = checkpoints.load_hubert(tmp_path / "ckpt")
    audio = jax.numpy.asarray(np.random.default_rng(0).standard_normal((1, 900)), jax.numpy.float32)
    np.testing.assert_allclose(loaded(audio)[0], model(audio)[0], atol=1e-5)
    assert not checkpoints.input_normalization(tmp_path / "ckpt")  # base layout: raw audio

    with pytest.raises(
        checkpoints.CheckpointError, match="(?s)does not exist.*hubert-large-ls960-ft"
    ):
        checkpoints.load_hubert(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="no config.json"):
        checkpoints.load_hubert(tmp_path / "empty")
    # A config with one layer more than the weights: the missing keys are named.
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoints.CheckpointError, match=r"missing keys \['encoder.layers.2"):
        checkpoints.load_hubert(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(checkpoints.CheckpointError, match="neither model.safetensors"):
        checkpoints.load_hubert(tmp_path / "ckpt")


@pytest.mark.parametrize("num_samples", [400, 401, 719, 720, 16_000, 80_214, 320_080])
def test_output_length_formula(num_samples):
    standard = hubert.HubertConfig()
    expected = (num_samples - 80) // 320
    assert standard.num_output_steps(num_samples) == features.hubert_num_steps(num_samples)
    assert features.hubert_num_steps(num_samples) == expected


def test_chunked_equals_unchunked(tmp_path):
    # No transformer layers: every output step depends on a finite neighbourhood (conv stack +
    # 16-step positional conv), so with enough context the chunked result is exactly the
    # unchunked one, and without context it differs only near the seams.
    model = _numpy_checkpoint(tmp_path / "ckpt", layout="large", num_hidden_layers=0)
    model = checkpoints.load_hubert(tmp_path / "ckpt")
    audio = np.random.default_rng(4).standard_normal(4013).astype(np.float32)
    total = model.config.num_output_steps(audio.shape[0])  # (4013 - 45) // 40 + 1 = 100 steps
    assert total == 100
    whole = features.hubert_steps(model, audio, chunk_seconds=10.0)
    # 400 steps per second for this conv stack (stride 40): chunks of 24 steps.
    chunked = features.hubert_steps(model, audio, chunk_seconds=0.06, context_seconds=0.025)
    assert chunked.shape == whole.shape == (total, 32)
    np.testing.assert_allclose(chunked, whole, atol=1e-4)

    no_context = features.hubert_steps(model, audio, chunk_seconds=0.06, context_seconds=0.0)
    seams = np.arange(24, total, 24)
    away = np.min(np.abs(np.arange(total)[:, None] - seams[None, :]), axis=1) >= 8
    np.testing.assert_allclose(no_context[away], whole[away], atol=1e-4)
    assert not np.allclose(no_context[~away], whole[~away], atol=1e-4)


def test_chunked_attention_model_keeps_exact_length(tmp_path):
    _numpy_checkpoint(tmp_path / "ckpt", layout="base", num_hidden_layers=2)
    model = checkpoints.load_hubert(tmp_path / "ckpt")
    audio = np.random.default_rng(5).standard_normal(3333).astype(np.float32)
    steps = features.hubert_steps(model, audio, chunk_seconds=0.05, context_seconds=0.02)
    assert steps.shape == (model.config.num_output_steps(3333), 32)
    assert np.all(np.isfinite(steps))


def test_frame_pairs_and_both_file_layouts(tmp_path):
    steps = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)  # odd T = 7 at 50 Hz
    pairs = features.frame_pairs(steps, fps=25)
    assert pairs.shape == (4, 2, 3)  # ER-NeRF: pad the odd step with the last one, then pair
    np.testing.assert_array_equal(pairs[:3].reshape(-1, 3), steps[:6])
    np.testing.assert_array_equal(pairs[3], steps[[6, 6]])
    assert features.frame_pairs(steps, fps=50).shape == (7, 2, 3)

    features.save_features(tmp_path / "aud_hu.npy", pairs)
    features.save_features(tmp_path / "steps.npy", steps)
    np.testing.assert_array_equal(features.load_hubert_features(tmp_path / "aud_hu.npy"), pairs)
    np.testing.assert_array_equal(features.load_hubert_features(tmp_path / "steps.npy"), pairs)
    back = features.load_hubert_features(tmp_path / "aud_hu.npy", layout="steps")
    np.testing.assert_array_equal(back, np.concatenate([steps, steps[-1:]]))
    features.save_features(tmp_path / "bad.npy", np.zeros((4, 16, 3)))
    with pytest.raises(ValueError, match=r"bad.npy.*\[N, 2, D\]"):
        features.load_hubert_features(tmp_path / "bad.npy")


def test_cli_writes_features_and_explains_missing_checkpoint(tmp_path, capsys):
    from jaxhead.audio.io import save_wav

    rate, seconds = 16_000, 0.48
    t = np.arange(int(rate * seconds)) / rate
    wav = tmp_path / "speech.wav"
    save_wav(wav, 0.3 * np.sin(2 * np.pi * 220 * t), rate)

    assert features.main([str(wav), "--out", str(tmp_path / "mfcc.npy"), "--kind", "mfcc"]) == 0
    assert np.load(tmp_path / "mfcc.npy").shape == (12, 16, 13)  # 0.48 s at 25 fps
    assert features.main([str(wav), "--out", str(tmp_path / "mel.npy"), "--kind", "logmel"]) == 0
    assert np.load(tmp_path / "mel.npy").shape == (12, 16, 80)

    # A user mistake goes through the one error path of every command: one line, exit code 1.
    from jaxhead.train import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.run_plain(
            features.main, [str(wav), "--out", str(tmp_path / "hu.npy"), "--kind", "hubert"]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hubert-large-ls960-ft" in err and "Traceback" not in err
    assert not (tmp_path / "hu.npy").exists()

    _numpy_checkpoint(tmp_path / "ckpt", layout="large")
    argv = [str(wav), "--out", str(tmp_path / "hu.npy"), "--kind", "hubert"]
    assert features.main([*argv, "--checkpoint", str(tmp_path / "ckpt"), "--fps", "25"]) == 0
    written = np.load(tmp_path / "hu.npy")
    # The tiny conv stack runs at 400 Hz: T = (7680 - 45) // 40 + 1 = 191 steps; the 50 Hz
    # pairing of the aud_hu layout is applied to those steps as they come.
    assert written.shape == (96, 2, 32) and np.all(np.isfinite(written))


def test_cli_on_real_video(shared_data, tmp_path):
    video = shared_data / "real" / "video" / "May_5s.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    out = tmp_path / "may_mel.npy"
    assert features.main([str(video), "--out", str(out), "--kind", "logmel", "--fps", "25"]) == 0
    mel = np.load(out)
    assert mel.shape == (125, 16, 80) and np.all(np.isfinite(mel))
    assert mel.std() > 0.5  # speech, not silence
