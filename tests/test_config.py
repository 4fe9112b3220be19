"""Audit configuration: profiles, overrides, validation errors, TOML round trip."""

from __future__ import annotations

import tomllib

import pytest

from robustxai import ConfigError, RobustXAIError, UnknownNameError
from robustxai.audit._config import PROFILES, deep_merge, load_config, validate_config
from robustxai.audit._config_toml import dump_toml
from robustxai.audit._runner import check_config, primary_condition

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._config, robustxai.audit._config_toml, robustxai.audit._runner, "
    "robustxai.audit._stages_manip"
)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_are_valid_and_round_trip(profile) -> None:
    cfg = load_config(profile=profile)
    check_config(cfg)
    again = validate_config(tomllib.loads(dump_toml(cfg.model_dump())))
    assert again == cfg and again.digest() == cfg.digest()


def test_user_file_overrides_profile(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "mine"\n[data]\nn_test = 50\n[explain]\nmethods = ["saliency"]\n')
    cfg = load_config(path, profile="smoke")
    assert cfg.name == "mine" and cfg.data.n_test == 50 and cfg.data.size == 32
    assert cfg.explain.methods == ["saliency"]


def test_unknown_key_is_an_error(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[data]\nn_tset = 50\n")
    with pytest.raises(ConfigError, match=r"data\.n_tset: unknown key"):
        load_config(path)


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_bad_toml(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_negative_epsilon_in_config(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[attacks]]\nname = "pgd"\nepsilons = [-0.1]\n')
    with pytest.raises(ConfigError, match="epsilons"):
        load_config(path)


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="smoke, default"):
        load_config(profile="huge")


def test_unknown_plugin_names_fail_before_work(tmp_path) -> None:
    for text, match in [
        ('[[attacks]]\nname = "cw"\n', "unknown attack 'cw'"),
        ('[explain]\nmethods = ["lrp"]\n', "unknown explainer 'lrp'"),
        ('[[models]]\nname = "x"\narch = "vgg99"\n', "unknown model 'vgg99'"),
        ('[[attacks]]\nname = "pgd"\nparams = { stepz = 3 }\n', "unknown keyword"),
    ]:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(UnknownNameError, match=match):
            check_config(load_config(path, profile="smoke"))


def test_missing_primary_attack_falls_back_with_a_warning(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[report]\nprimary_attack = "deepfool"\n')
    cfg = load_config(path, profile="smoke")
    warnings = check_config(cfg)
    assert len(warnings) == 1 and "'deepfool' is not among the configured attacks" in warnings[0]
    assert primary_condition(cfg)[0] == "fgsm"


def test_natural_overrides_of_the_profile_work(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[explain]\nmethods = ["saliency"]\n[[attacks]]\nname = "fgsm"\n')
    assert check_config(load_config(path, profile="default")) != []  # primary falls back, with a warning


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[attacks]]\nname = "pgd"\nparams = { eps = 0.1 }\n', "not params.eps"),
        ('[[models]]\nname = "m"\narch_kwargs = { num_classes = 3 }\n', "may not set num_classes"),
        ('[[models]]\nname = "m"\narch_kwargs = { widht = [1] }\n', "unknown keyword"),
        ('name = "../../etc"\n', "name"),
        ('name = ""\n', "name"),
    ],
)
def test_reserved_and_unsafe_settings_are_refused(tmp_path, text, match) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(RobustXAIError, match=match):
        check_config(load_config(path, profile="smoke"))


def test_primary_condition_picks_nearest_epsilon() -> None:
    cfg = load_config(profile="default")
    assert primary_condition(cfg) == ("pgd", pytest.approx(4 / 255))


def test_duplicate_model_names(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[models]]\nname = "a"\n[[models]]\nname = "a"\n')
    with pytest.raises(ConfigError, match="unique"):
        load_config(path)


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"c": 3}, "l": [2]}) == {
        "a": {"b": 1, "c": 3},
        "l": [2],
    }


def test_tops_that_round_to_the_same_metric_name_are_refused(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[explain]\ntops = [0.12, 0.124]\n")
    with pytest.raises(ConfigError, match="percentage point"):
        load_config(path, profile="smoke")


def test_report_opens_the_store_read_only(tmp_path) -> None:
    from robustxai.results import Store

    with Store(tmp_path) as store:
        store.set_meta("x", 1)
    with Store(tmp_path, readonly=True) as store:
        assert store.get_meta("x") == 1
        with pytest.raises(Exception, match="readonly"):
            store.set_meta("y", 2)


def test_manipulation_method_params_params_must_be_a_table() -> None:
    """``method_params.<method>.params`` that is not a table is one config line, not a TypeError."""
    from robustxai.audit._stages_manip import check_manipulation_config

    raw = load_config(profile="smoke").model_dump()
    raw["manipulation"]["method_params"] = {"saliency": {"params": 3}}
    with pytest.raises(ConfigError, match=r"manipulation.method_params.saliency.params must be a table"):
        check_manipulation_config(validate_config(raw))
