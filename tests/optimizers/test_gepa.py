"""GEPAEvolInstruct on a scripted world where one method variant truly fails less.

The evol LM fails item ``n`` when ``n % 6`` is in the method's failing set: e_0 fails {0, 1, 2}
(half the dev set); the rule "Keep every number" gives {1, 2, 3} (as bad, on other items), "Keep
the question" {0, 4}, "Name the inputs" {2} (the best). The scripted reflection LM proposes e_0
plus one rule, cycling through the three; GEPA has to keep the best one by its dev scores.
"""

from __future__ import annotations

import json
import re
import threading

import dspy
import pytest
from dspy.utils.exceptions import LMAuthError

from autoevol.lm import Budget, CallPolicy
from autoevol.lm.policy import BudgetExceeded
from autoevol.optimizers import AutoEvolInstruct, NoImprovement
from autoevol.optimizers.gepa import GEPAEvolInstruct, build_teleprompter, matched_metric_calls
from autoevol.programs.evolver import Evolver, load_evolver
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.scripted import ScriptedRequest, scripted_lm
from tests.optimizers.test_measurement_log import moved

NUMBERS = "Keep every number of the original instruction."
QUESTION = "Keep the question the original instruction asks."
INPUTS = "Name the inputs the task works on."
FIXES = {NUMBERS: ({0}, {3}), QUESTION: ({1, 2}, {4}), INPUTS: ({0, 1}, set())}
DEV_SIZE, MINIBATCH = 18, 3


def failing_residues(method: str) -> set[int]:
    failing = {0, 1, 2}
    for rule, (fixed, broken) in FIXES.items():
        if rule in method:
            failing = (failing - fixed) | broken
    return failing


def items(count: int, start: int = 0) -> list[str]:
    return [f"Task #{n}: how many parts does item {n} need?" for n in range(start, start + count)]


def evol(request: ScriptedRequest) -> dict[str, str]:
    if request.plain:
        return {"answer": "It needs four parts: two frames and two joints, each checked twice."}
    text = request.inputs["instruction"]
    number = int(re.search(r"#(\d+)", text).group(1))
    if number % 6 in failing_residues(request.instructions):
        return {"working_notes": "-", "evolved_instruction": text}
    return {"working_notes": "-", "evolved_instruction": f"{text} Give the count per part and justify it."}


class Reflection:
    """The reflection LM: proposes e_0 plus the next rule of ``rules`` (JSON, as GEPA's proposer asks)."""

    def __init__(self, rules: tuple[str, ...] = (NUMBERS, QUESTION, INPUTS)) -> None:
        self.rules = rules
        self.requests: list[ScriptedRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> str:
        with self._lock:
            self.requests.append(request)
            rule = self.rules[(len(self.requests) - 1) % len(self.rules)]
        return json.dumps({"new_instruction": f"{INITIAL_METHOD}\n\n{rule}"})


def teleprompter(reflection: Reflection, evol_lm=None, **settings) -> GEPAEvolInstruct:
    policy = CallPolicy(max_retries=0)
    options = dict(dev_size=DEV_SIZE, batch_size=MINIBATCH, reflection_minibatch_size=MINIBATCH,
                   max_metric_calls=150, num_threads=1, seed=0)
    options.update(settings)
    return GEPAEvolInstruct(optimizer_lm=scripted_lm(reflection, role="optimizer", policy=policy),
                            evol_lm=evol_lm or scripted_lm(evol, policy=policy), **options)


TRAIN, DEV = items(54), items(DEV_SIZE, start=100)  # the dev items: three of each residue


def test_gepa_finds_the_method_that_truly_fails_less():
    reflection = Reflection()
    compiled = teleprompter(reflection).compile(Evolver(), trainset=TRAIN, valset=DEV)
    assert compiled.method == f"{INITIAL_METHOD}\n\n{INPUTS}"
    meta = compiled.metadata
    assert meta["optimizer"] == "gepa"
    assert meta["initial_dev_failure_rate"] == 0.5 and meta["dev_failure_rate"] == pytest.approx(1 / 6)
    assert meta["initial_dev_failures"] == {"failed": 9, "total": DEV_SIZE}
    assert compiled.compile_history[-1].selected.by_rule == {"unchanged": 3}
    rates = [candidate["dev_failure_rate"] for candidate in meta["gepa"]["candidates"]]
    assert rates[0] == 0.5 and min(rates) == pytest.approx(1 / 6, abs=1e-3)
    assert meta["history"] and meta["history"][-1]["failure_rate"] == pytest.approx(1 / 6)
    # the reflection LM read autoevol's feedback: the rule that fired and the rewrite
    assert any("Failure (unchanged)" in request.user and "Rewrite:" in request.user for request in reflection.requests)


def test_the_budget_in_metric_calls_is_respected():
    compiled = teleprompter(Reflection(), max_metric_calls=60).compile(Evolver(), trainset=TRAIN, valset=DEV,)
    spent = compiled.metadata["gepa"]["total_metric_calls"]
    assert 0 < spent <= 60 + DEV_SIZE + 2 * MINIBATCH  # GEPA stops between iterations: one more at most
    evol_calls = compiled.metadata["usage"]["evol"]["calls"]
    assert evol_calls <= 2 * (60 + DEV_SIZE + 2 * MINIBATCH) + 2 * DEV_SIZE  # evolve + answer per metric call


def test_the_default_budget_matches_auto_evol_instructs_schedule():
    assert matched_metric_calls(dev_size=50, batch_size=10, num_candidates=5, max_steps=10) == 50 + 10 * (10 + 250)
    assert matched_metric_calls(dev_size=10, batch_size=4, num_candidates=2, max_steps=3, evolution_rounds=2) == \
        10 + 3 * (8 + 20)
    tele = GEPAEvolInstruct(optimizer_lm=scripted_lm(evol), dev_size=10, batch_size=4, num_candidates=2, max_steps=3)
    assert tele.max_metric_calls == 10 + 3 * (4 + 20)


def test_gepa_uses_the_same_split_as_auto_evol_instruct():
    data = items(60)
    auto = AutoEvolInstruct(optimizer_lm=scripted_lm(evol), dev_size=12, batch_size=5, seed=3)
    gepa = build_teleprompter("gepa", optimizer_lm=scripted_lm(evol), dev_size=12, batch_size=5, seed=3,
                              racing=False, proposal_mode="edit", max_metric_calls=None)
    assert isinstance(gepa, GEPAEvolInstruct)
    assert gepa.split(data) == auto.split(data) and len(gepa.split(data).confirm) == 12
    assert gepa.split(data, DEV) == auto.split(data, DEV)
    unconfirmed = build_teleprompter("gepa", optimizer_lm=scripted_lm(evol), dev_size=12, batch_size=5, seed=3,
                                     confirm_size=0)
    assert unconfirmed.split(data) == AutoEvolInstruct(optimizer_lm=scripted_lm(evol), dev_size=12, batch_size=5,
                                                       seed=3, confirm_size=0).split(data)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_teleprompter("simba", optimizer_lm=scripted_lm(evol))  # type: ignore[arg-type]


def test_the_gain_is_confirmed_on_items_gepa_never_saw(tmp_path):
    compiled = teleprompter(Reflection()).compile(Evolver(), trainset=TRAIN, valset=DEV, run_dir=tmp_path / "run")
    confirmation = compiled.metadata["confirmation"]
    assert compiled.metadata["confirmed"] is True and confirmation["items"] == DEV_SIZE
    # e_0 fails residues 0, 1 and 2, the result only 2: it wins the items of residues 0 and 1 and loses none
    assert confirmation["challenger_only"] == 0 and confirmation["reference_only"] >= 4
    assert json.loads((tmp_path / "run" / "confirmation.json").read_text())["supported"] is True


#: A rule that fixes the dev items' failures and fails as many other items: GEPA sees only its dev gain.
DEV_ONLY = "Keep every task number above one hundred."


def dev_lucky(request: ScriptedRequest) -> dict[str, str]:
    if request.plain or DEV_ONLY not in request.instructions:
        return evol(request)
    text = request.inputs["instruction"]
    number = int(re.search(r"#(\d+)", text).group(1))
    failing = {2} if number >= 100 else {3, 4, 5}  # the dev items are #100 on, the others the confirmation split
    if number % 6 in failing:
        return {"working_notes": "-", "evolved_instruction": text}
    return {"working_notes": "-", "evolved_instruction": f"{text} Give the count per part and justify it."}


def test_a_dev_gain_that_does_not_hold_on_the_confirmation_split_is_no_result(tmp_path):
    lm = scripted_lm(dev_lucky, policy=CallPolicy(max_retries=0))
    with pytest.raises(NoImprovement, match=f"did not hold on {DEV_SIZE} confirmation items") as raised:
        teleprompter(Reflection(rules=(DEV_ONLY,)), evol_lm=lm).compile(Evolver(), trainset=TRAIN, valset=DEV,
                                                                          run_dir=tmp_path / "run")
    assert raised.value.evolver.method == INITIAL_METHOD and raised.value.evolver.metadata["confirmed"] is False
    assert json.loads((tmp_path / "run" / "confirmation.json").read_text())["supported"] is False
    kept = teleprompter(Reflection(rules=(DEV_ONLY,)), evol_lm=lm, keep_unchanged=True).compile(
        Evolver(), trainset=TRAIN, valset=DEV)
    assert kept.method == INITIAL_METHOD and kept.metadata["confirmation"]["challenger_only"] > 0
    # without a confirmation split the dev gain is the result
    unconfirmed = teleprompter(Reflection(rules=(DEV_ONLY,)), evol_lm=lm, confirm_size=0).compile(
        Evolver(), trainset=TRAIN, valset=DEV)
    assert DEV_ONLY in unconfirmed.method and unconfirmed.metadata["confirmed"] is None


def test_the_evolver_file_round_trips(tmp_path):
    compiled = teleprompter(Reflection()).compile(Evolver(), trainset=TRAIN, valset=DEV)
    path = compiled.save(tmp_path / "gepa-evolver.json")
    loaded = load_evolver(path)
    assert loaded.method == compiled.method and loaded.fingerprint == compiled.fingerprint
    assert loaded.metadata["gepa"] == json.loads(json.dumps(compiled.metadata["gepa"]))
    assert loaded.metadata["optimizer"] == "gepa"


def test_a_compile_that_found_nothing_raises_unless_keep_unchanged():
    with pytest.raises(NoImprovement) as raised:
        teleprompter(Reflection(rules=(NUMBERS,)), max_metric_calls=80).compile(Evolver(), trainset=TRAIN, valset=DEV)
    assert raised.value.evolver.method == INITIAL_METHOD
    kept = teleprompter(Reflection(rules=(NUMBERS,)), max_metric_calls=80, keep_unchanged=True).compile(
        Evolver(), trainset=TRAIN, valset=DEV)
    assert kept.method == INITIAL_METHOD and kept.metadata["dev_failure_rate"] == 0.5


def test_a_permanent_lm_error_stops_the_compile():
    def refusing(request: ScriptedRequest) -> dict[str, str]:
        if request.plain:
            raise LMAuthError("invalid api key", model="openai/scripted")
        return evol(request)

    lm = scripted_lm(refusing, policy=CallPolicy(max_retries=0))
    with pytest.raises(LMAuthError):
        teleprompter(Reflection(), evol_lm=lm).compile(Evolver(), trainset=TRAIN, valset=DEV)
    assert lm.engine.calls < 150  # stopped, not carried on through the budget


def test_a_spent_budget_stops_and_the_run_directory_resumes(tmp_path):
    budgeted = scripted_lm(evol, policy=CallPolicy(max_retries=0), budget=Budget(max_calls=40))
    with pytest.raises(BudgetExceeded):
        teleprompter(Reflection(), evol_lm=budgeted).compile(Evolver(), trainset=TRAIN, valset=DEV,
                                                              run_dir=tmp_path / "run")
    resumed = teleprompter(Reflection()).compile(Evolver(), trainset=TRAIN, valset=DEV, run_dir=tmp_path / "run")
    assert resumed.method == f"{INITIAL_METHOD}\n\n{INPUTS}"
    assert (tmp_path / "run" / "gepa").is_dir()


def test_a_resumed_compile_counts_the_calls_and_time_of_its_interrupted_runs(tmp_path):
    first_lm = scripted_lm(evol, policy=CallPolicy(max_retries=0), budget=Budget(max_calls=60))
    with pytest.raises(BudgetExceeded):
        teleprompter(Reflection(), evol_lm=first_lm).compile(Evolver(), trainset=TRAIN, valset=DEV,
                                                              run_dir=tmp_path / "run")
    interrupted = json.loads((tmp_path / "run" / "gepa-lm-calls.json").read_text())
    assert interrupted["seconds"] > 0 and {usage["role"] for usage in interrupted["usage"]} >= {"evol"}
    resumed_lm = scripted_lm(evol, policy=CallPolicy(max_retries=0))
    resumed = teleprompter(Reflection(), evol_lm=resumed_lm).compile(Evolver(), trainset=TRAIN, valset=DEV,
                                                                     run_dir=tmp_path / "run")
    evol_calls = resumed.metadata["usage"]["evol"]["calls"]
    # the resumed run's own calls plus the first run's recorded ones: none of the first run's is lost
    assert evol_calls == resumed_lm.engine.calls + next(u["calls"] for u in interrupted["usage"] if u["role"] == "evol")
    assert resumed.metadata["seconds"] >= interrupted["seconds"]


def test_gepa_runs_under_the_evol_lm_whatever_dspy_is_configured_with():
    other = scripted_lm(lambda request: {"answer": "wrong LM"})
    with dspy.context(lm=other):
        compiled = teleprompter(Reflection()).compile(Evolver(), trainset=TRAIN, valset=DEV)
    assert compiled.metadata["dev_failure_rate"] == pytest.approx(1 / 6) and other.engine.calls == 0


def test_a_permanent_error_of_the_reflection_lm_stops_the_compile():
    class Refusing(Reflection):
        def __call__(self, request: ScriptedRequest) -> str:
            raise LMAuthError("invalid api key", model="openai/scripted")

    with pytest.raises(LMAuthError):
        teleprompter(Refusing()).compile(Evolver(), trainset=TRAIN, valset=DEV)


def test_an_lm_call_budget_stops_gepa_and_a_rerun_replays_it(tmp_path):
    evol_lm = scripted_lm(evol, policy=CallPolicy(max_retries=0))
    # the confirmation's calls come after GEPA's budget: left out here, so that GEPA's are counted alone
    first = teleprompter(Reflection(), evol_lm=evol_lm, max_lm_calls=40, keep_unchanged=True, confirm_size=0).compile(
        Evolver(), trainset=TRAIN, valset=DEV, run_dir=tmp_path / "run")
    assert first.metadata["stopped"] == "max_lm_calls"
    spent = sum(role["calls"] for role in first.metadata["usage"].values())
    assert 40 <= spent <= 40 + 2 * (DEV_SIZE + 2 * MINIBATCH) + 2  # one iteration past it at most
    calls = evol_lm.engine.calls
    again = teleprompter(Reflection(), evol_lm=evol_lm, max_lm_calls=40, keep_unchanged=True, confirm_size=0).compile(
        Evolver(), trainset=TRAIN, valset=DEV, run_dir=tmp_path / "run")
    assert evol_lm.engine.calls == calls  # the spent budget is remembered: nothing more to do
    assert again.method == first.method
    assert {role: u["calls"] for role, u in again.metadata["usage"].items()} == \
        {role: u["calls"] for role, u in first.metadata["usage"].items()}


def test_dev_items_whose_answer_hit_an_lm_error_are_left_out_of_both_rescored_rates():
    def answers_fail(request: ScriptedRequest) -> dict[str, str]:
        if request.plain and ("Task #100:" in request.user or "Task #101:" in request.user):
            raise RuntimeError("the endpoint dropped the connection")
        return evol(request)

    lm = scripted_lm(answers_fail, policy=CallPolicy(max_retries=0))
    compiled = teleprompter(Reflection(), evol_lm=lm).compile(Evolver(), trainset=TRAIN, valset=DEV)
    # #100 and #101 (residues 4 and 5, passed by every method) are left out, not failed by e_0
    assert compiled.metadata["initial_dev_failures"] == {"failed": 9, "total": DEV_SIZE - 2}
    assert compiled.compile_history[-1].selected.evaluated == DEV_SIZE - 2
    assert "lm_error" not in compiled.compile_history[-1].selected.by_rule


def test_a_finished_run_resumed_without_its_call_cache_rescores_and_confirms_from_its_log(tmp_path):
    """On another machine (no call cache) the measurement log holds the rescoring and the confirmation,
    and GEPA's saved state its search: one item is measured again."""
    data = TRAIN + items(40, start=200)
    first = teleprompter(Reflection(), confirm_size=12).compile(Evolver(), trainset=data, valset=DEV,
                                                                run_dir=tmp_path / "run")
    assert first.metadata["confirmation"] is not None and INPUTS in first.method
    logged = [json.loads(line) for line in (tmp_path / "run" / "measurements.jsonl").read_text().splitlines()]
    assert {(line["split"], line["method"]) for line in logged} == {
        (split, method) for split in ("dev", "confirm")
        for method in (first.metadata["initial_method_fingerprint"], first.fingerprint)}
    evolved = {}
    for name, keep_log in (("with-log", True), ("without-log", False)):
        moved(tmp_path / "run", tmp_path / name, keep_log=keep_log)
        requests = []

        def recording(request: ScriptedRequest, requests=requests):
            requests.append(request)
            return evol(request)

        again = teleprompter(Reflection(), evol_lm=scripted_lm(recording, policy=CallPolicy(max_retries=0), cache=False),
                             confirm_size=12).compile(Evolver(), trainset=data, valset=DEV, run_dir=tmp_path / name)
        assert again.method == first.method and again.metadata["confirmation"] == first.metadata["confirmation"]
        evolved[name] = [request for request in requests if not request.plain]
    # GEPA's seed on one dev item (dspy evaluates at least one), nor its best method, nor the confirmation
    assert len(evolved["with-log"]) == 1
    # without the log: the rescoring and the confirmation again (both methods, dev and confirmation items)
    # (the seed's one item may be answered by DSPy's in-memory cache when e_0 is rescored on it)
    assert 2 * (DEV_SIZE + 12) <= len(evolved["without-log"]) <= 1 + 2 * (DEV_SIZE + 12)
