"""Cases of W&B's sweep engine (github.com/wandb/sweeps), ported as data: what its validator accepts
and refuses, the grids it lists, its q-values, its hyperband rungs and stops.

Each case cites the file and test (or schema definition) of wandb/sweeps at :data:`COMMIT` it was
taken from. ``differs`` names an entry of :data:`DIFFERENCES` where launchbay does otherwise on
purpose; every entry is listed, with its reason, in docs/sweeps.md ("Differences from W&B's sweep
engine"). Configs are W&B's; where one has no ``metric`` the test adds ``{name: loss}`` (launchbay
needs one: see ``metric-required``).
"""

COMMIT = "b1dfc5f95e7fa179519718e92371d1423c116893"
SCHEMA = "src/sweeps/config/schema.json"
VALIDATION_TESTS = "tests/test_validation.py"

#: Where launchbay differs from W&B's engine, and why (mirrored in docs/sweeps.md).
DIFFERENCES = {
    "metric-required": "a sweep without metric is refused: launchbay ranks and ends trials by it",
    "median-pruner": "early_terminate type median is launchbay's (Optuna's MedianPruner); W&B has hyperband only",
    "custom-method": "method custom (an external scheduler) is refused: launchbay runs grid, random and bayes",
    "unbounded": "normal, log_normal, beta and their q-variants are refused: the optimizers sample bounded ranges",
    "multi-metric": "metrics (a list, W&B's multi-objective form) is refused: a sweep ranks by one metric",
    "hyperband-min-and-max": "min_iter with max_iter and no s: W&B's engine fails (it reads s); launchbay uses "
    "min_iter's rungs up to max_iter",
    "float-s": "s must be a whole number: W&B's schema takes any number but its engine fails on range(2.5)",
    "name-extensions": "parameter names may start with a config file (config.yaml:a.b) or hold \\. (a dot in a key): "
    "launchbay's --file-set syntax",
    "text-number": "min: 1e-6 (text to YAML) is refused with how to write it (1.0e-6); W&B fails comparing text",
    "old-distributions": "log_uniform, q_log_uniform and inv_log_uniform are accepted as W&B's engine runs them; "
    "W&B's validator only warns (its bounds are natural logs)",
    "ignored-keys": "controller, scheduler, apiVersion, kind and image_uri are accepted and ignored, with a note",
    "impute": "metric impute and impute_while_running are accepted; launchbay's optimizers leave failed and "
    "running trials out instead of filling in a value (a note says so)",
    "bayes-probabilities": "probabilities are used by random search; bayes's GP models the values without them",
    "duplicate-values-random": "repeated values count once, in random search too (W&B's random draws a repeated "
    "value more often)",
    "grid-int-float": "1 and 1.0 in one values list are one grid value: W&B's grid hash counts them equal "
    "(test_yaml_hash_float) yet its grid makes a trial of each",
    "grid-rounding": "a grid's float q-values are rounded to 12 decimals (W&B's numpy.arange keeps 0.30000000000000004)",
    "q-rounding": "random q-values are rounded to 12 decimals after round(x / q) * q",
}

_P = {"a": {"values": [1, 2, 3, 4]}}


def _case(source, config, wandb, differs=None):
    return {"source": source, "config": config, "wandb": wandb, "differs": differs}


#: Whole configs: ``wandb`` is "accept" or "refuse" (its validator, schema_violations_from_proposed_config,
#: or, for a grid, its engine: grid_search_next_runs). Verified against W&B's package (sweeps 0.2.0 with the
#: schema.json of COMMIT) run side by side.
VALIDATION = [
    _case(f"{VALIDATION_TESTS}::test_validation_disable (goal minimise)",
          {"method": "random", "metric": {"name": "loss", "goal": "minimise"}, "parameters": {"v1": {"values": ["a", "b"]}}}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_validation_not_enough_params", {"method": "random", "parameters": {}}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_minmax_type_inference (uniform over ints)",
          {"method": "random", "parameters": {"a": {"min": 0, "max": 1, "distribution": "uniform"}}}, "accept"),
    _case(f"{VALIDATION_TESTS}::test_minmax_type_inference (int_uniform over floats)",
          {"method": "random", "parameters": {"a": {"min": 0.0, "max": 1.0, "distribution": "int_uniform"}}}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_controller[cloud]", {"controller": {"type": "cloud"}, "method": "random", "parameters": _P}, "accept", "ignored-keys"),
    _case(f"{VALIDATION_TESTS}::test_controller[local]", {"controller": {"type": "local"}, "method": "random", "parameters": _P}, "accept", "ignored-keys"),
    _case(f"{VALIDATION_TESTS}::test_controller[invalid]", {"controller": {"type": "invalid"}, "method": "random", "parameters": _P}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_invalid_config", "this is a totally invalid config", "refuse"),
    _case(f"{VALIDATION_TESTS}::test_sweepconfig_no_method_baseline_validation", {"parameters": _P}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_invalid_early_stopping (invalid type)",
          {"method": "bayes", "metric": {"name": "loss"}, "early_terminate": {"type": "invalid type"}, "parameters": _P}, "refuse"),
    _case(f"{VALIDATION_TESTS}::test_param_dict (nested parameters)",
          {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
           "parameters": {"a": {"parameters": {"b": {"values": [1, 2]}, "c": {"parameters": {"d": {"value": 1}}}}}}}, "accept"),
    _case(f"{VALIDATION_TESTS}::test_param_dict (same name, other level)",
          {"method": "grid", "metric": {"name": "loss"},
           "parameters": {"a": {"parameters": {"b": {"value": 1}}}, "b": {"values": [2, 3]}}}, "accept"),
    _case(f"{VALIDATION_TESTS}::test_invalid_minmax_with_no_sweepconfig_validation",
          {"method": "random", "parameters": {"a": {"max": 0, "min": 1}}}, "refuse"),
    *[_case(f"{VALIDATION_TESTS}::test_that_old_distributions_warn[{d}]",
            {"method": "random", "parameters": {"a": {"min": 1, "max": 2, "distribution": d}}}, "refuse", "old-distributions")
      for d in ("log_uniform", "q_log_uniform", "inv_log_uniform")],
    *[_case(f"{VALIDATION_TESTS}::test_that_minmax_validation_fails_on_loguniform_values_types[{d}]",
            {"method": "random", "parameters": {"a": {"min": 2, "max": 1, "distribution": d}}}, "refuse")
      for d in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")],
    *[_case(f"{VALIDATION_TESTS}::test_that_run_cap_validation_works_for_min_value[{cap!r}]",
            {"method": "random", "parameters": _P, "run_cap": cap}, "accept" if ok else "refuse")
      for cap, ok in ((-1, False), (0, False), (1, True), (300, True), (-0.3, False), (5.1, False), ("1", False))],
    _case(f"{SCHEMA} run_cap (type integer: draft 7 counts 5.0 as one)", {"method": "random", "parameters": _P, "run_cap": 5.0}, "accept"),
    _case(f"{SCHEMA} hyperband_stopping eta (a number, exclusiveMinimum 1)",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2.5}}, "accept"),
    _case(f"{SCHEMA} hyperband_stopping eta 1", {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 1}}, "refuse"),
    _case(f"{SCHEMA} hyperband_stopping (anyOf: min_iter, or max_iter and s)",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband"}}, "refuse"),
    _case(f"{SCHEMA} hyperband_stopping max_iter without s",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "max_iter": 27}}, "refuse"),
    _case(f"{SCHEMA} hyperband_stopping max_iter, s, strict",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "strict": True}}, "accept"),
    _case(f"{SCHEMA} hyperband_stopping s 2.5",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2.5}}, "accept", "float-s"),
    _case(f"{SCHEMA} hyperband_stopping additionalProperties",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "min_iter": 3, "extra_key": 1234}}, "refuse"),
    _case(f"{SCHEMA} hyperband_stopping min_iter and max_iter",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 9}}, "accept", "hyperband-min-and-max"),
    _case(f"{SCHEMA} early_terminate (oneOf: hyperband only)",
          {"method": "random", "parameters": _P, "early_terminate": {"type": "median", "min_iter": 2}}, "refuse", "median-pruner"),
    _case(f"{SCHEMA} metric target, impute, impute_while_running",
          {"method": "random", "parameters": _P, "metric": {"name": "x", "target": 0.1, "impute": "best", "impute_while_running": "latest"}}, "accept", "impute"),
    _case(f"{SCHEMA} metric target", {"method": "random", "parameters": _P, "metric": {"name": "x", "goal": "maximize", "target": 0.9}}, "accept"),
    _case(f"{SCHEMA} metric impute enum", {"method": "random", "parameters": _P, "metric": {"name": "x", "impute": "mean"}}, "refuse"),
    _case(f"{SCHEMA} metric additionalProperties", {"method": "random", "parameters": _P, "metric": {"name": "x", "foo": 1}}, "refuse"),
    _case(f"{SCHEMA} metric required name", {"method": "random", "parameters": _P, "metric": {"goal": "minimize"}}, "refuse"),
    _case(f"{SCHEMA} no metric", {"method": "random", "parameters": _P, "metric": None}, "accept", "metric-required"),
    _case(f"{SCHEMA} metrics (multi-objective)",
          {"method": "random", "parameters": _P, "metrics": [{"name": "a"}, {"name": "b"}]}, "accept", "multi-metric"),
    _case(f"{SCHEMA} scheduler", {"method": "random", "parameters": _P, "scheduler": {"engine": "wandb"}}, "accept", "ignored-keys"),
    _case(f"{SCHEMA} apiVersion, kind, image_uri",
          {"method": "random", "parameters": _P, "apiVersion": "v1", "kind": "sweep", "image_uri": "img:1"}, "accept", "ignored-keys"),
    _case(f"{SCHEMA} kind enum", {"method": "random", "parameters": _P, "kind": "job"}, "refuse"),
    _case(f"{SCHEMA} method custom", {"method": "custom", "parameters": _P}, "accept", "custom-method"),
    _case(f"{SCHEMA} additionalProperties (top level)", {"method": "random", "parameters": _P, "epochs": 3}, "refuse"),
    _case(f"{SCHEMA} parameters propertyNames (space)", {"method": "random", "parameters": {"a b": {"values": [1]}}}, "refuse"),
    _case(f"{SCHEMA} parameters propertyNames (digit first)", {"method": "random", "parameters": {"1a": {"values": [1]}}}, "refuse"),
    _case(f"{SCHEMA} parameters propertyNames (nested)",
          {"method": "random", "parameters": {"opt": {"parameters": {"l r": {"values": [1]}}}}}, "refuse"),
    _case(f"{SCHEMA} parameters propertyNames (dots, dashes)", {"method": "random", "parameters": {"opt.lr-x_1": {"values": [1]}}}, "accept"),
    _case(f"{SCHEMA} parameters propertyNames (config file)",
          {"method": "random", "parameters": {"config.yaml:opt.lr": {"values": [1]}}}, "refuse", "name-extensions"),
    _case(f"{SCHEMA} param_single_value + param_categorical (value with values)",
          {"method": "random", "parameters": {"a": {"value": 1, "values": [1, 2]}}}, "refuse"),
    _case(f"{SCHEMA} param_categorical (values with min, max)",
          {"method": "random", "parameters": {"a": {"values": [1], "min": 0, "max": 1}}}, "refuse"),
    _case(f"{SCHEMA} param_int_uniform (no q)",
          {"method": "random", "parameters": {"a": {"min": 0, "max": 4, "q": 2, "distribution": "int_uniform"}}}, "refuse"),
    _case(f"{SCHEMA} param_quniform (q defaults to 1.0)",
          {"method": "random", "parameters": {"a": {"min": 0, "max": 4, "distribution": "q_uniform"}}}, "accept"),
    _case(f"{SCHEMA} param_quniform q 0", {"method": "random", "parameters": {"a": {"min": 0, "max": 4, "q": 0, "distribution": "q_uniform"}}}, "refuse"),
    _case(f"{SCHEMA} param_normal", {"method": "random", "parameters": {"a": {"distribution": "normal", "mu": 0, "sigma": 1}}}, "accept", "unbounded"),
    _case(f"{SCHEMA} param_inv_loguniform_v2",
          {"method": "random", "parameters": {"a": {"min": 0.001, "max": 1, "distribution": "inv_log_uniform_values"}}}, "accept"),
    _case("src/sweeps/config/schema.py::validate_categorical_prob (length)",
          {"method": "random", "parameters": {"a": {"values": [1, 2], "probabilities": [0.5]}}}, "refuse"),
    _case("src/sweeps/config/schema.py::validate_categorical_prob (sum)",
          {"method": "random", "parameters": {"a": {"values": [1, 2], "probabilities": [0.5, 0.6]}}}, "refuse"),
    _case(f"{SCHEMA} param_categorical_w_probabilities (minimum 0)",
          {"method": "random", "parameters": {"a": {"values": [1, 2], "probabilities": [1.5, -0.5]}}}, "refuse"),
    _case(f"{SCHEMA} param_categorical_w_probabilities",
          {"method": "random", "parameters": {"a": {"values": [1, 2, 3], "probabilities": [0.2, 0.3, 0.5]}}}, "accept"),
    _case("src/sweeps/grid_search.py::grid_search_next_runs (probabilities disallowed in grid)",
          {"method": "grid", "parameters": {"a": {"values": [1, 2], "probabilities": [0.5, 0.5]}}}, "refuse"),
    _case("src/sweeps/grid_search.py::grid_search_next_runs (grid of a uniform)",
          {"method": "grid", "parameters": {"a": {"min": 0.0, "max": 1.0}}}, "refuse"),
    _case("src/sweeps/config/schema.py::validate_min_max (min: 1e-6 read by YAML as text)",
          {"method": "random", "parameters": {"a": {"min": "1e-6", "max": 1.0}}}, "refuse", "text-number"),
]  # fmt: skip

#: Grids: the values W&B lists for one parameter, or the number of combinations.
GRIDS = [
    {"source": "tests/test_grid_search.py::test_int_uniform_bounded_grid_search",
     "parameters": {"v1": {"distribution": "int_uniform", "min": -52, "max": 10}, "v2": {"value": "test"}},
     "values": {"v1": list(range(-52, 11))}, "count": 63},
    {"source": "tests/test_grid_search.py::test_q_uniform_bounded_grid_search (numpy.arange(-9.211, 23.23, 2.341))",
     "parameters": {"v1": {"distribution": "q_uniform", "min": -9.211, "max": 23.23, "q": 2.341}},
     "values": {"v1": [-9.211 + i * 2.341 for i in range(14)]}, "count": 14, "differs": "grid-rounding"},
    {"source": "tests/test_grid_search.py::test_grid_search_duplicated_values_are_not_duplicated_in_answer "
     "(its tuple (2, 3) as the list YAML writes)",
     "parameters": {"v1": {"values": [None, 2, 3, "a", [2, 3], 3]}, "v2": {"values": ["a", "b", "c'"]}}, "count": 15},
    {"source": "tests/test_grid_search.py::test_grid_search_anaconda1_order",
     "parameters": {"v1": {"values": ["a", "b", "c", "a"]}, "v2": {"values": [1, 2, 3]}}, "count": 9},
    {"source": "tests/test_grid_search.py::test_yaml_hash_float / test_grid_search_matches_integer_float_values",
     "parameters": {"v1": {"values": [3000000, 3000000.0, "next"]}}, "values": {"v1": [3000000, "next"]}, "count": 2,
     "differs": "grid-int-float"},
    {"source": "tests/test_grid_search.py::test_grid_search_keeps_bool_and_int_values_distinct",
     "parameters": {"v1": {"values": [True, 1]}}, "values": {"v1": [True, 1]}, "count": 2},
    {"source": "tests/test_grid_search.py::test_grid_search_constant_vals_only",
     "parameters": {"v1": {"value": "a"}, "v2": {"value": 1}}, "count": 1},
    {"source": "tests/test_grid_search.py::test_nested_grid_search_advances (its count: the product of its values)",
     "parameters": {"p1": {"values": ["a", "b", "c"]},
                    "p2": {"parameters": {"n1": {"values": [0.01, 0.001]}, "n3": {"values": [1, 2, 3]}}}}, "count": 18},
    {"source": "src/sweeps/config/schema.json param_quniform (q default 1.0: numpy.arange(0, 3, 1.0) is floats)",
     "parameters": {"v1": {"distribution": "q_uniform", "min": 0, "max": 3}}, "values": {"v1": [0.0, 1.0, 2.0]}, "count": 3},
]  # fmt: skip

#: q-distributions: every value a multiple of q (W&B: round(x / q) * q), an int exactly when q is one.
Q_VALUES = [
    *[{"source": f"tests/test_random_search.py::test_rand_q_uniform[{q}]",
       "body": {"distribution": "q_uniform", "min": 0, "max": 100, "q": q}, "q": q, "range": (0, 100)} for q in (0.1, 1, 10)],
    *[{"source": f"tests/test_random_search.py::test_rand_q_loguniform_values[{q}]",
       "body": {"distribution": "q_log_uniform_values", "min": 0.1, "max": 100, "q": q}, "q": q, "range": (0, 100)} for q in (0.1, 1, 10)],
    {"source": "src/sweeps/params.py::HyperParameter.ppf Q_UNIFORM (q default 1.0, a float)",
     "body": {"distribution": "q_uniform", "min": 0, "max": 10}, "q": 1.0, "range": (0, 10)},
]  # fmt: skip

_HB = "tests/test_hyperband_stopping.py"
#: Hyperband: the rungs W&B makes, and which running runs it stops. Runs: (name, state, history).
HYPERBAND = [
    {"source": f"{_HB}::test_hyperband_min_iter_bands", "goal": "minimize",
     "early": {"type": "hyperband", "min_iter": 3, "eta": 3}, "bands3": [3, 9, 27],
     "runs": [("a", "running", [10] * 4), ("b", "running", [10 - i for i in range(10)])], "stop": ["a"]},
    {"source": f"{_HB}::test_hyperband_min_iter_bands_max", "goal": "maximize",
     "early": {"type": "hyperband", "min_iter": 3, "eta": 3}, "bands3": [3, 9, 27],
     "runs": [("a", "running", [10] * 4), ("b", "running", [10 + i for i in range(10)])], "stop": ["a"]},
    {"source": f"{_HB}::test_hyperband_max_iter_bands", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 81, "eta": 3, "s": 3}, "bands3": [3, 9, 27],
     "runs": [("a", "running", [10] * 4), ("b", "running", [10 - i for i in range(10)])], "stop": ["a"]},
    {"source": f"{_HB}::test_init_from_max_iter", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2}, "bands": [2, 6],
     "runs": [("a", "running", [10] * 4), ("b", "running", [10 - i for i in range(10)])], "stop": ["a"]},
    {"source": f"{_HB}::test_single_run", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2, "strict": False},
     "runs": [("a", "running", [10 - i for i in range(10)])], "stop": []},
    {"source": f"{_HB}::test_2runs_band1_pass", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2, "strict": False},
     "runs": [("a", "running", [10, 10, 6]), ("b", "running", [10 - i for i in range(10)])], "stop": []},
    {"source": f"{_HB}::test_5runs_band1_stop_2", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2},
     "runs": [("a", "finished", [10, 9]), ("b", "running", [10, 10]), ("c", "running", [10, 8, 8]),
              ("d", "running", [10, 7, 7]), ("e", "finished", [10, 6, 6])], "stop": ["b"]},
    {"source": f"{_HB}::test_5runs_band1_stop_2_1stnoband", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2},
     "runs": [("a", "finished", [10]), ("b", "running", [11]), ("c", "running", [10, 8, 8]),
              ("d", "running", [10, 7, 7]), ("e", "finished", [10, 6, 6])], "stop": ["b", "c"]},
    {"source": f"{_HB}::test_eta_3", "goal": "minimize",
     "early": {"type": "hyperband", "max_iter": 9, "eta": 3, "s": 2, "strict": False},
     "runs": [("a", "finished", [9, 8]), ("b", "running", [11, 11]), ("c", "running", [10, 8, 3]),
              ("d", "running", [10, 7, 4]), ("e", "running", [10, 6, 6])], "stop": ["b", "e"]},
    {"source": f"{_HB}::test_eta_3_max", "goal": "maximize",
     "early": {"type": "hyperband", "max_iter": 9, "eta": 3, "s": 2, "strict": False},
     "runs": [("a", "finished", [-10, -9]), ("b", "running", [-11, -11]), ("c", "running", [-10, -8, -5, -3]),
              ("d", "running", [-10, -6, -2]), ("e", "running", [-10, -6, -6, -6])], "stop": ["b", "e"]},
]  # fmt: skip
