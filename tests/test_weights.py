"""The shared state-dict check used by the VGG16, LPIPS and SyncNet loaders."""

import numpy as np

from jaxhead.pretrained.weights import state_dict_problems


def test_state_dict_problems_names_each_kind_in_natural_order():
    expected = {"features.2.weight": (4, 3), "features.10.weight": (2,), "fc.bias": (1,)}
    state = {"features.2.weight": np.zeros((3, 4)), "features.10.weight": np.zeros(2),
             "extra.11": np.zeros(1), "extra.9": np.zeros(1)}  # fmt: skip
    problems = state_dict_problems(state, expected, " (other layout?)")
    assert problems == [
        "missing keys ['fc.bias']",
        "unexpected keys ['extra.9', 'extra.11'] (other layout?)",
        "mis-shaped features.2.weight (3, 4) (expected (4, 3))",
    ]
    assert state_dict_problems({"a": np.zeros(2)}, {"a": (2,)}) == []
