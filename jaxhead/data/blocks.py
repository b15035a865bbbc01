"""The NeRF stage's ``config.data`` blocks (data only, light imports: configs read them without
loading the readers). :mod:`jaxhead.data.voca_frames` and :mod:`jaxhead.data.video_frames` are the
readers that use them."""

from __future__ import annotations

import ml_collections


def voca_frames_config() -> ml_collections.ConfigDict:
    """The ``config.data`` block of the NeRF stage on VOCASET-format data."""
    return ml_collections.ConfigDict(
        {
            "kind": "voca",
            # Folder with data_verts.npy & co. Empty: the embedded synthetic dataset, generated
            # once into the cache folder from `synthetic`.
            "root": "",
            "template_mesh": "",  # real VOCASET: FLAME_sample.ply or texture_mesh.obj
            # empty: $JAXHEAD_CACHE, else $XDG_CACHE_HOME/jaxhead, else ~/.cache/jaxhead
            "cache_dir": "",
            "synthetic": {"identities": 4, "sequences": 4, "seconds": 4.0, "seed": 0},
            "subjects": (),  # empty: every subject
            "max_sentences": 0,  # training sentences per subject, 0: all
            "val_sentences": 1,  # last sentences of each subject held out
            "max_frames": 0,  # per sentence and split, 0: all
            "fps": 25.0,
            "resolution": 128,  # target image side
            "lr_resolution": 32,  # side of the rendered feature map
            "supersample": 2,  # anti-aliasing of the reference renders
            "fov_deg": 0.0,  # 0: the dataset's camera (synthetic: factors.npz), else this FOV
            "camera_distance": 0.0,  # 0: the dataset's, else metres
            "train_yaw_jitter_deg": 10.0,
            "heldout_view_yaw_deg": 20.0,
            "audio_window": 16,  # log-mel steps per frame (0.2 s at 80 Hz)
            "batch_size": 4,  # frame pairs per step (global)
            "num_threads": 2,
        }
    )


def video_frames_config() -> ml_collections.ConfigDict:
    """The ``config.data`` block of the NeRF stage on one preprocessed video (module docstring)."""
    return ml_collections.ConfigDict(
        {
            "kind": "video",
            # The preprocessed folder (transforms_*.json, gt_imgs/, ori_imgs/*.lms, parsing/,
            # aud.wav, au.csv): what scripts/preprocess.py or AD-NeRF's preprocessing writes.
            "root": "",
            # empty: $JAXHEAD_CACHE, else $XDG_CACHE_HOME/jaxhead, else ~/.cache/jaxhead
            "cache_dir": "",
            "audio_file": "aud.wav",  # 16 kHz speech of the video, in the folder
            "fps": 25.0,  # frame rate of the img_ids (the layout's 25)
            "train_seconds": 0.0,  # with val_seconds > 0: train on [0, train_seconds) (0: all)
            "val_seconds": 0.0,  # > 0: the last seconds are 'val'; 0: the transforms_*.json split
            "max_frames": 0,  # per split, first frames only (0: all)
            "resolution": 128,  # side of the square target crop
            "lr_resolution": 32,  # side of the rendered feature map
            "mask_parts": ("head", "neck"),  # parsing classes kept; the rest becomes white
            # "crop": the head crop matted onto white; "full": the whole frame, unmatted, with the
            # static background bc.jpg (the person mask is then head + neck + torso).
            "frame": "crop",
            # > 0: train on patches of this side of the feature map (jaxhead.nerf.patches),
            # centred on the mouth / the eyes with these probabilities, else anywhere.
            "patch": 0,
            "patch_mouth": 0.0,
            "patch_eyes": 0.0,
            # Blinks (jaxhead.nerf.patches): the training frames whose blink value reaches
            # blink_min (0: off), or else the largest blink_share of them (0: off), are blink
            # frames, whose pairs come blink_repeat times per epoch and centre their patch on the
            # eyes whenever it is not on the mouth.
            "blink_share": 0.0,
            "blink_min": 0.0,
            "blink_repeat": 1,
            "crop": {"scale": 2.0, "shift_y": -0.1, "box": ()},  # box: (x0, y0, side) in pixels
            "normalize_scene": True,
            "scene_radius": 0.2,  # half crop side at the head's distance, scene units
            "missing_frames": "error",  # or "drop": frames lacking a file are left out
            "audio_window": 16,  # log-mel steps per frame (0.2 s at 80 Hz)
            "batch_size": 1,  # frame pairs per step (global)
            "num_threads": 2,
        }
    )
