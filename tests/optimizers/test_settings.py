"""CompileSettings: one frozen dataclass for every hyperparameter of an Auto Evol-Instruct compile,
shared by AutoEvolInstruct's keywords, ``settings=``, the CLI, the studies and the run header."""

from __future__ import annotations

import dataclasses

import pytest

from autoevol.lm.managed import ManagedLM
from autoevol.optimizers.auto_evol import AutoEvolInstruct, CompileSettings
from autoevol.optimizers.auto_evol.roles import evol_answer_settings
from autoevol.optimizers.auto_evol.settings import compile_header
from autoevol.optimizers.gepa import GEPAEvolInstruct, build_teleprompter

#: AutoEvolInstruct's keyword defaults before CompileSettings (confirm_size None: dev_size).
KEYWORD_DEFAULTS = {
    "num_candidates": 5, "batch_size": 10, "dev_size": 50, "confirm_size": None, "max_steps": 10,
    "evolution_rounds": 1, "temperature": 0.6, "top_p": 0.95, "evol_temperature": 0.0, "patience": 1,
    "racing": True, "racing_alpha": 0.05, "selection_alpha": 0.5, "confirm_alpha": 0.1, "proposal_mode": "edit",
    "proposal_attempts": 3, "max_method_words": 250, "answer_max_tokens": None, "trajectory_answers": True,
    "keep_unchanged": False, "max_demos": 0, "demo_candidates": 2, "teacher_demos": False, "keep_demos": False,
    "starts": (), "seed": 0, "num_threads": 4,
}

#: What ``hyperparameters()`` gave before CompileSettings: the run.json header of existing run
#: directories holds these keys and values, so a compile started then must resume now.
DEFAULT_HEADER = {
    "num_candidates": 5, "batch_size": 10, "dev_size": 50, "confirm_size": 50, "max_steps": 10, "evolution_rounds": 1,
    "temperature": 0.6, "top_p": 0.95, "evol_temperature": 0.0, "patience": 1, "racing": True, "racing_alpha": 0.05,
    "selection_alpha": 0.5, "confirm_alpha": 0.1, "proposal_mode": "edit", "proposal_attempts": 3,
    "max_method_words": 250, "answer_max_tokens": None, "trajectory_answers": True, "max_demos": 0,
    "demo_candidates": 2, "teacher_demos": False, "keep_demos": False, "starts": [], "seed": 0,
}
CHANGED = dict(num_candidates=3, batch_size=4, dev_size=20, max_steps=2, evolution_rounds=2, temperature=0.8,
               top_p=0.9, evol_temperature=None, patience=2, racing=False, racing_alpha=0.1, selection_alpha=0.2,
               confirm_alpha=0.3, proposal_mode="rewrite", proposal_attempts=1, max_method_words=100,
               answer_max_tokens=200, trajectory_answers=False, keep_unchanged=True, max_demos=2, demo_candidates=1,
               teacher_demos=True, keep_demos=True, starts=["weak", "deepen", "weak"], seed=7, num_threads=2)
CHANGED_HEADER = {
    "num_candidates": 3, "batch_size": 4, "dev_size": 20, "confirm_size": 20, "max_steps": 2, "evolution_rounds": 2,
    "temperature": 0.8, "top_p": 0.9, "evol_temperature": None, "patience": 2, "racing": False, "racing_alpha": 0.1,
    "selection_alpha": 0.2, "confirm_alpha": 0.3, "proposal_mode": "rewrite", "proposal_attempts": 1,
    "max_method_words": 100, "answer_max_tokens": 200, "trajectory_answers": False, "max_demos": 2,
    "demo_candidates": 1, "teacher_demos": True, "keep_demos": True, "starts": ["weak", "deepen"], "seed": 7,
}


def tele(**keywords):
    return AutoEvolInstruct(optimizer_lm=None, **keywords)  # type: ignore[arg-type]


def test_the_defaults_are_the_keyword_defaults_of_before():
    settings = CompileSettings()
    assert dataclasses.asdict(settings) == KEYWORD_DEFAULTS
    assert tele().settings == settings
    assert settings.confirm_items == 50 and CompileSettings(dev_size=20).confirm_items == 20


def test_the_header_keys_and_values_are_those_of_before():
    assert CompileSettings().hyperparameters() == DEFAULT_HEADER
    assert list(CompileSettings().hyperparameters()) == list(DEFAULT_HEADER)  # the same order, too
    assert tele().hyperparameters() == DEFAULT_HEADER
    assert CompileSettings(**CHANGED).hyperparameters() == CHANGED_HEADER
    assert tele(**CHANGED).hyperparameters() == CHANGED_HEADER
    assert CompileSettings(confirm_size=0).hyperparameters()["confirm_size"] == 0


def test_the_run_header_is_that_of_before():
    header = compile_header(CompileSettings().hyperparameters(), start_fingerprint="abc", models={"evol": "m"},
                            evol_answers={}, detector_rules=["unchanged"], data={"pool": 1})
    expected = {key: value for key, value in DEFAULT_HEADER.items()
                if key not in {"max_steps", "patience", "keep_demos", "max_demos", "demo_candidates", "teacher_demos"}}
    assert header.settings == {**expected, "models": {"evol": "m"}, "detector_rules": ["unchanged"]}


@pytest.mark.parametrize(("marked_text", "max_tokens", "recorded"), [
    (True, 450, {"evol_notes_max_chars": 675}), (True, None, {}), (False, 450, {})])
def test_the_run_header_names_the_cap_on_the_evol_lms_working_notes(marked_text, max_tokens, recorded):
    evol = ManagedLM("hosted_vllm/m", api_base="http://127.0.0.1:9", structured_output="json_object",
                     marked_text=marked_text, max_tokens=max_tokens)
    assert evol_answer_settings(evol) == recorded
    header = compile_header(CompileSettings().hyperparameters(), start_fingerprint="abc", models={"evol": "m"},
                            evol_answers=evol_answer_settings(evol), detector_rules=[], data={})
    other = compile_header(CompileSettings().hyperparameters(), start_fingerprint="abc", models={"evol": "m"},
                           evol_answers=evol_answer_settings(evol.copy(max_tokens=900)), detector_rules=[], data={})
    assert bool(header.differences(other)) is marked_text  # another limit, other notes: not the same run


@pytest.mark.parametrize(("bad", "message"), [
    (dict(num_candidates=0), "num_candidates must be at least 1"),
    (dict(confirm_size=-1), "confirm_size must be at least 0"),
    (dict(max_method_words=19), "max_method_words must be at least 20"),
    (dict(top_p=0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(selection_alpha=1), r"selection_alpha must be in \(0, 1\)"),
    (dict(racing_alpha=0), r"racing_alpha must be in \(0, 1\)"),
    (dict(proposal_mode="paraphrase"), "proposal_mode must be 'edit' or 'rewrite'"),
    (dict(starts=["weak", "nonsense"]), "unknown starting method.*nonsense.*choose from weak"),
])
def test_a_setting_out_of_its_range_is_refused_with_its_name(bad, message):
    with pytest.raises(ValueError, match=message):
        CompileSettings(**bad)
    with pytest.raises(ValueError, match=message):
        tele(**bad)


def test_the_settings_are_frozen_and_a_changed_copy_is_checked_again():
    settings = CompileSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_steps = 3  # type: ignore[misc]
    assert dataclasses.replace(settings, max_steps=3).max_steps == 3
    with pytest.raises(ValueError, match="max_steps must be at least 0"):
        dataclasses.replace(settings, max_steps=-1)


def test_starts_are_kept_as_a_tuple_without_repeats():
    assert CompileSettings(starts=["weak", "deepen", "weak"]).starts == ("weak", "deepen")


def test_keywords_and_settings_give_the_same_teleprompter_settings():
    assert tele(**CHANGED).settings == AutoEvolInstruct(optimizer_lm=None,  # type: ignore[arg-type]
                                                        settings=CompileSettings(**CHANGED)).settings


def test_a_keyword_given_with_settings_overrides_it():
    given = CompileSettings(num_candidates=3, dev_size=20)
    settings = tele(settings=given, dev_size=30, seed=5).settings
    assert (settings.num_candidates, settings.dev_size, settings.seed) == (3, 30, 5)
    assert settings.confirm_items == 30  # confirm_size left at None follows the dev size
    assert given.dev_size == 20  # the settings given are not changed


def test_an_unknown_keyword_is_refused_with_its_name():
    with pytest.raises(TypeError, match="'num_candiates'"):
        tele(num_candiates=3)
    with pytest.raises(TypeError, match="'bogus'.*'other'"):
        tele(settings=CompileSettings(), other=1, bogus=2)


def test_build_teleprompter_takes_the_settings_for_both_optimizers():
    settings = CompileSettings(num_candidates=3, dev_size=20, confirm_size=5, seed=4, starts=["weak"])
    auto = build_teleprompter("auto-evol", optimizer_lm=None, settings=settings, max_steps=2)
    assert isinstance(auto, AutoEvolInstruct) and auto.settings == dataclasses.replace(settings, max_steps=2)
    gepa = build_teleprompter("gepa", optimizer_lm=None, settings=settings, max_steps=2)
    assert isinstance(gepa, GEPAEvolInstruct)
    assert (gepa.num_candidates, gepa.dev_size, gepa.confirm_size, gepa.seed, gepa.max_steps) == (3, 20, 5, 4, 2)
