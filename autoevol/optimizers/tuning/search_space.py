"""The hyperparameter search space of a study: ranges and fixed values, from defaults or a file.

A search-space file (YAML or JSON) maps a parameter to either a fixed value or ``{low, high}``
(integer or float inferred from the bounds; ``log: true`` for a log scale)::

    num_candidates: {low: 3, high: 9}
    max_steps: 4
    temperature: {low: 0.4, high: 0.8}
    optimizer: {choices: [auto-evol, gepa]}   # optional; default: Auto Evol-Instruct only

``optimizer`` is categorical: ``auto-evol`` or ``gepa`` (a GEPA trial gets the budget Auto
Evol-Instruct's schedule would spend with the trial's other values, see ``optimizers/gepa/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autoevol.optimizers.gepa import OPTIMIZERS as OPTIMIZER_CHOICES


class SearchSpaceError(ValueError):
    """A search space names an unknown parameter or gives it an invalid value."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a range ``[low, high]`` (int or float), ``choices`` (categorical) or a fixed value."""

    name: str
    low: float | None = None
    high: float | None = None
    kind: str = "int"
    log: bool = False
    fixed: Any = None
    choices: tuple[Any, ...] | None = None

    @property
    def is_fixed(self) -> bool:
        return self.fixed is not None

    def to_dict(self) -> dict[str, Any]:
        if self.is_fixed:
            return {"value": self.fixed}
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "kind": self.kind, "log": self.log}

    def clip(self, value: Any) -> Any:
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return value if value in self.choices else self.choices[0]
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.kind == "int" else float(value)


#: The teleprompter argument each parameter sets, its default range, and its kind.
DEFAULT_SPACE: dict[str, Param] = {
    "num_candidates": Param("num_candidates", 1, 9, "int"),
    "batch_size": Param("batch_size", 4, 20, "int"),
    "max_steps": Param("max_steps", 1, 15, "int"),
    "evolution_rounds": Param("evolution_rounds", 1, 3, "int"),
    "temperature": Param("temperature", 0.3, 1.2, "float"),
    "dev_size": Param("dev_size", 10, 50, "int"),
    "max_demos": Param("max_demos", 0, 3, "int"),
}

#: The optional categorical parameter choosing the teleprompter (absent: Auto Evol-Instruct).
OPTIMIZER_PARAM = "optimizer"

#: The paper's settings (the teleprompter's defaults): enqueued as a study's first trial.
PAPER_DEFAULTS: dict[str, Any] = {
    "num_candidates": 5,
    "batch_size": 10,
    "max_steps": 10,
    "evolution_rounds": 1,
    "temperature": 0.6,
    "dev_size": 50,
    "max_demos": 0,  # the paper evolves with the method text alone
}


class SearchSpace:
    """Ranges and fixed values of the tuned hyperparameters.

    Example:
        >>> space = SearchSpace.from_mapping({"max_steps": 3, "num_candidates": {"low": 2, "high": 4}})
        >>> space.params["max_steps"].fixed
        3
    """

    def __init__(self, params: dict[str, Param] | None = None) -> None:
        self.params = dict(DEFAULT_SPACE if params is None else params)

    @classmethod
    def from_mapping(cls, overrides: dict[str, Any] | None, *, source: str = "search space") -> SearchSpace:
        """The default space with ``overrides`` applied (a fixed value or ``{low, high}`` per key)."""
        params = dict(DEFAULT_SPACE)
        if overrides is None:
            return cls(params)
        if not isinstance(overrides, dict):
            raise SearchSpaceError(f"{source}: must be a mapping of parameter -> value or {{low, high}}, "
                                   f"not {type(overrides).__name__}")
        for key, value in overrides.items():
            if key == OPTIMIZER_PARAM:
                params[key] = _optimizer_param(value, source)
                continue
            if key not in DEFAULT_SPACE:
                raise SearchSpaceError(f"{source}: unknown parameter '{key}' "
                                       f"(known: {', '.join([*DEFAULT_SPACE, OPTIMIZER_PARAM])})")
            params[key] = _param(key, value, source)
        return cls(params)

    def with_optimizers(self, names: list[str]) -> SearchSpace:
        """This space with the optimizer fixed to one name, or categorical over several."""
        value: Any = names[0] if len(set(names)) == 1 else {"choices": list(dict.fromkeys(names))}
        return SearchSpace({**self.params, OPTIMIZER_PARAM: _optimizer_param(value, "--optimizer")})

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SearchSpaceError(f"{path}: no such search-space file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise SearchSpaceError(f"{path}: cannot read the search-space file ({error})") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as error:  # json or yaml syntax error
            raise SearchSpaceError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                                   f"{' '.join(str(error).split())[:200]}") from None
        return cls.from_mapping(data if data is not None else {}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {name: param.to_dict() for name, param in sorted(self.params.items())}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Every hyperparameter's value for ``trial`` (fixed ones are not suggested)."""
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if param.is_fixed:
                values[name] = param.fixed
            elif param.choices is not None:
                values[name] = trial.suggest_categorical(name, list(param.choices))
            elif param.kind == "int":
                values[name] = trial.suggest_int(name, int(param.low), int(param.high), log=param.log)
            else:
                values[name] = trial.suggest_float(name, float(param.low), float(param.high), log=param.log)
        return values

    def high(self, name: str) -> float:
        param = self.params[name]
        return param.fixed if param.is_fixed else param.high

    def enqueueable(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` clipped into the space, without fixed parameters (for ``enqueue_trial``)."""
        return {name: param.clip(values[name]) for name, param in self.params.items()
                if not param.is_fixed and name in values}


def _param(key: str, value: Any, source: str) -> Param:
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log", "value"}
        if unknown:
            raise SearchSpaceError(f"{source}: parameter '{key}' has unknown field(s) {sorted(unknown)} "
                                   "(use low, high, log, or value)")
        if "value" in value:
            return _param(key, value["value"], source)
        if "low" not in value or "high" not in value:
            raise SearchSpaceError(f"{source}: parameter '{key}' needs both 'low' and 'high'")
        low, high = value["low"], value["high"]
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise SearchSpaceError(f"{source}: parameter '{key}': bounds must be numbers, got {bound!r}")
        if low > high:
            raise SearchSpaceError(f"{source}: parameter '{key}': low {low} is above high {high}")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        if DEFAULT_SPACE[key].kind == "int" and kind == "float":
            raise SearchSpaceError(f"{source}: parameter '{key}' takes whole numbers, got {low}..{high}")
        if kind == "int" and DEFAULT_SPACE[key].kind == "float":
            kind = "float"
        log = bool(value.get("log", False))
        if log and low <= 0:
            raise SearchSpaceError(f"{source}: parameter '{key}': a log scale needs low > 0")
        _check_minimum(key, low, source)
        return Param(key, low, high, kind, log)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SearchSpaceError(f"{source}: parameter '{key}' must be a number or {{low, high}}, got {value!r}")
    if DEFAULT_SPACE[key].kind == "int" and not float(value).is_integer():
        raise SearchSpaceError(f"{source}: parameter '{key}' takes a whole number, got {value}")
    _check_minimum(key, value, source)
    fixed = int(value) if DEFAULT_SPACE[key].kind == "int" else float(value)
    return Param(key, kind=DEFAULT_SPACE[key].kind, fixed=fixed)


def _optimizer_param(value: Any, source: str) -> Param:
    """The optimizer: one name (fixed) or ``{choices: [...]}`` of ``OPTIMIZER_CHOICES``."""
    if isinstance(value, dict) and "value" in value and len(value) == 1:
        value = value["value"]
    if isinstance(value, dict):
        choices = value.get("choices")
        if set(value) != {"choices"} or not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"{source}: parameter '{OPTIMIZER_PARAM}' takes a name or {{choices: [...]}} "
                                   f"of {', '.join(OPTIMIZER_CHOICES)}")
    else:
        choices = [value]
    unknown = [choice for choice in choices if choice not in OPTIMIZER_CHOICES]
    if unknown:
        raise SearchSpaceError(f"{source}: parameter '{OPTIMIZER_PARAM}': unknown optimizer {unknown[0]!r} "
                               f"(known: {', '.join(OPTIMIZER_CHOICES)})")
    unique = tuple(dict.fromkeys(choices))
    if len(unique) == 1:
        return Param(OPTIMIZER_PARAM, kind="categorical", fixed=unique[0])
    return Param(OPTIMIZER_PARAM, kind="categorical", choices=unique)


def _check_minimum(key: str, value: float, source: str) -> None:
    minimum = 0.0 if key in ("temperature", "max_demos") else 1
    if value < minimum:
        raise SearchSpaceError(f"{source}: parameter '{key}' must be at least {minimum}, got {value}")
