"""Profiles validate against the schema; bad ones fail with the key named."""

import pytest

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


def test_override_merges_and_is_validated():
    """`snakemake --config override=...`: mappings merge key by key, leaf strings
    (as Snakemake hands them over) are read as YAML, a bad value names its key."""
    from bsr.config import parse_override

    base = load_profile("cpu")
    over = parse_override({"seeds": ["0"], "train": {"phase1": {"steps": "250"}},
                           "runs": {"bsr_shift5": {"phase1": {"steps": "2000"}}}})
    assert over == {"seeds": [0], "train": {"phase1": {"steps": 250}}, "runs": {"bsr_shift5": {"phase1": {"steps": 2000}}}}
    p = load_profile("cpu", override=over)
    assert p["seeds"] == [0]
    assert p["train"]["phase1"] == {"steps": 250, "lr": base["train"]["phase1"]["lr"]}   # lr kept
    assert p["train"]["crop"] == base["train"]["crop"]
    assert p["runs"]["bsr_shift5"] == {"phase1": {"steps": 2000}}
    assert p["runs"]["pdg_1"] == base["runs"]["pdg_1"]
    assert load_profile("cpu", override="{seeds: [1, 2]}")["seeds"] == [1, 2]      # YAML text
    assert load_profile("cpu", override=None) == base
    with pytest.raises(ConfigError, match="seeds"):
        load_profile("cpu", override={"seeds": "many"})
    with pytest.raises(ConfigError, match="override"):
        parse_override("[1, 2]")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_override("{seeds: [0")
    # Snakemake's string leaves: numbers and true/false/null are typed, other text is kept as given
    typed = parse_override({"a": "1.0e-3", "b": "true", "c": "null", "d": "yes", "e": "run 1: one seed",
                            "f": "#1 run", "g": "a # b", "h": "2025-01-01", "i": "/data/x"})
    assert typed == {"a": 0.001, "b": True, "c": None, "d": "yes", "e": "run 1: one seed", "f": "#1 run",
                     "g": "a # b", "h": "2025-01-01", "i": "/data/x"}
    # YAML text keeps its own types (a quoted number stays a string), and a dict is not retyped again
    assert parse_override("{x: '0', y: 0}") == {"x": "0", "y": 0}


def test_unknown_workflow_config_key_is_refused():
    """`snakemake --config profle=test` must not silently run the default profile."""
    from bsr.config import WORKFLOW_CONFIG_KEYS, check_config_keys

    assert WORKFLOW_CONFIG_KEYS == ("profile", "profile_file", "override")
    for ok in (None, {}, {"profile": "test"}, {"profile_file": "x.yaml", "override": "{seeds: [0]}"}):
        check_config_keys(ok)
    with pytest.raises(ConfigError, match=r"^unknown --config key 'profle' \(did you mean 'profile'\?\); "
                                          r"known keys: profile, profile_file, override$"):
        check_config_keys({"profle": "test"})
    with pytest.raises(ConfigError, match=r"unknown --config keys 'overide' \(did you mean 'override'\?\), 'zzz';"):
        check_config_keys({"profile": "test", "zzz": "1", "overide": "{}"})


def test_extends_merges_a_base_file_under_the_profile(tmp_path):
    """`extends:` puts a base file's blocks under the profile; the profile's keys win,
    mappings merge key by key; a missing base or a cycle is one clear error."""
    from bsr.config import _read_yaml

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text("seeds: [0, 1]\nstudy: {n_qualitative: 2, pdg_threshold: 0.6}\n")
    (tmp_path / "p.yaml").write_text("extends: shared/base.yaml\nprofile: p\nstudy: {n_qualitative: 5}\n")
    got = _read_yaml(tmp_path / "p.yaml")
    assert got == {"profile": "p", "study": {"n_qualitative": 5, "pdg_threshold": 0.6}, "seeds": [0, 1]}
    assert list(got) == ["profile", "study", "seeds"]          # the profile's own keys first
    (tmp_path / "q.yaml").write_text("extends: nowhere.yaml\nprofile: q\n")
    with pytest.raises(ConfigError, match="extends .*nowhere.yaml, which is not found"):
        _read_yaml(tmp_path / "q.yaml")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends it again"):
        _read_yaml(tmp_path / "a.yaml")


def test_cpu_and_paper_share_the_study_blocks():
    cpu, paper = load_profile("cpu"), load_profile("paper")
    assert cpu["runs"] == paper["runs"] and cpu["study"] == paper["study"]
    assert cpu["train"]["model"] != paper["train"]["model"]
