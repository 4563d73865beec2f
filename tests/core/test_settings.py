"""Settings, the frozen snapshot a result's ``config`` is: read like the dict it was made from,
never changed."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from whisperkit.core.config import Settings


def test_lists_in_a_snapshot_equal_the_lists_given_and_cannot_be_changed():
    settings = Settings({"channel_names": ["left", "right"], "nested": {"sizes": [8, [4]]}})
    assert settings["channel_names"] == ["left", "right"]  # a tuple here would compare unequal
    assert settings["nested"]["sizes"] == [8, [4]]
    with pytest.raises(TypeError, match="cannot be changed"):
        settings["channel_names"].append("centre")
    with pytest.raises(TypeError, match="cannot be changed"):
        settings["nested"]["sizes"][1].sort()
    assert settings["channel_names"] == ["left", "right"]


def test_a_snapshot_survives_json_pickle_and_copy_and_thaws_to_plain_values():
    settings = Settings({"channel_names": ["left", "right"], "batch_size": 8})
    assert json.loads(json.dumps(settings)) == {"channel_names": ["left", "right"], "batch_size": 8}
    for again in (pickle.loads(pickle.dumps(settings)), copy.deepcopy(settings)):
        assert again == settings
        with pytest.raises(TypeError):
            again["channel_names"].append("centre")
    plain = settings.to_dict()
    plain["channel_names"].append("centre")  # a plain list again
    assert type(plain["channel_names"]) is list and settings["channel_names"] == ["left", "right"]
