"""Profiles validate against the schema; bad ones fail with the key named."""

import pytest
import yaml

from bsr.config import ConfigError, load_profile, validate_profile
from bsr.paths import REPO_ROOT

PROFILES = sorted(p.stem for p in (REPO_ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_is_valid(name):
    cfg = load_profile(name)
    assert cfg["profile"] == name


def test_bad_profiles_name_the_key(tmp_path):
    good = load_profile("test")
    with pytest.raises(ConfigError, match="'thread' was unexpected"):
        validate_profile({**good, "thread": 2})
    with pytest.raises(ConfigError, match=r"test_sets.0.kind: 'twist'"):
        validate_profile({**good, "test_sets": [{"dataset": "synthetic", "kind": "twist", "levels": [5]}]})
    with pytest.raises(ConfigError, match=r"synthetic.size"):
        validate_profile({**good, "synthetic": {"size": [8, 8]}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "missing.yaml")
