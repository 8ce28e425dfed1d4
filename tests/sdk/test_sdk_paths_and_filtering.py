"""Key paths, include/exclude filtering and type inference: the helpers the queue side reuses."""

from __future__ import annotations

import pytest
from launchbay.sdk import ConfigPathError, join_path, split_path
from launchbay.sdk.filtering import excluding_prefix, filter_tree, flatten, is_allowed, unflatten
from launchbay.sdk.paths import parse_prefixes
from launchbay.sdk.types import infer_types


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("trainer", ("trainer",)),
        ("trainer.learning_rate", ("trainer", "learning_rate")),
        (r"trainer\.private", ("trainer.private",)),
        (r"a.b\.c.d", ("a", "b.c", "d")),
        (r"\.hidden", (".hidden",)),
        (r"ends\.", ("ends.",)),
    ],
)
def test_split_path_splits_on_unescaped_dots_only(path, parts):
    assert split_path(path) == parts
    assert join_path(parts) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "the path is empty"),
        ("a..b", "empty key between dots"),
        (".a", "empty key between dots"),
        ("a.", "empty key between dots"),
        ("a\\", "trailing backslash"),
        (r"a\b", r"a backslash may only escape a dot (\.)"),
        ("a\\\\.b", r"a backslash may only escape a dot (\.)"),
    ],
)
def test_malformed_paths_are_a_value_error_naming_the_path(path, reason):
    with pytest.raises(ValueError) as caught:
        split_path(path)
    assert isinstance(caught.value, ConfigPathError)
    assert str(caught.value) == f"invalid key path '{path}': {reason}"


def test_include_and_exclude_accept_a_string_or_a_list_and_name_the_argument_when_wrong():
    assert parse_prefixes("trainer", "include") == (["trainer"], [("trainer",)])
    assert parse_prefixes(["a.b", "c"], "include") == (["a.b", "c"], [("a", "b"), ("c",)])
    assert parse_prefixes(None, "exclude") == ([], [])
    with pytest.raises(ConfigPathError, match=r"^exclude: invalid key path 'a\.\.b': empty key between dots$"):
        parse_prefixes(["ok", "a..b"], "exclude")
    with pytest.raises(ConfigPathError, match="include must hold strings, got int 3"):
        parse_prefixes(["a", 3], "include")


def test_prefixes_match_whole_keys_not_string_prefixes():
    include = [("train",)]
    assert not is_allowed(("trainer", "lr"), include, [])
    assert is_allowed(("train", "lr"), include, [])


def test_exclude_wins_over_include_and_names_the_blocking_prefix():
    include, exclude = [("trainer",)], [("trainer", "private")]
    assert is_allowed(("trainer", "lr"), include, exclude)
    assert not is_allowed(("trainer", "private", "key"), include, exclude)
    assert excluding_prefix(("trainer", "private", "key"), include, exclude) == ("trainer", "private")
    assert not is_allowed(("seed",), include, exclude)
    assert excluding_prefix(("seed",), include, exclude) is None


def test_without_include_prefixes_everything_not_excluded_is_allowed():
    assert is_allowed(("anything", "at", "all"), [], [])
    assert not is_allowed(("seed",), [], [("seed",)])


def test_an_include_prefix_naming_a_leaf_keeps_just_that_leaf():
    tree = {"trainer": {"lr": 0.1, "bs": 32}, "seed": 1}
    assert filter_tree(tree, [("trainer", "lr")], []) == ({"trainer": {"lr": 0.1}}, ["trainer.bs", "seed"])


def test_lists_are_leaves_and_empty_dicts_are_kept_as_leaves():
    tree = {"layers": [{"a": 1}], "extra": {}, "nested": {"empty": {}}}
    assert flatten(tree) == {("layers",): [{"a": 1}], ("extra",): {}, ("nested", "empty"): {}}
    assert unflatten(flatten(tree)) == tree
    kept, dropped = filter_tree(tree, [], [("layers", "0")])
    assert kept == tree
    assert dropped == []


def test_filter_tree_reports_dropped_leaves_as_escaped_dotted_paths():
    tree = {"trainer.private": {"key": 1}, "trainer": {"private": {"key": 2}, "lr": 3}}
    kept, dropped = filter_tree(tree, [], [("trainer.private",)])
    assert kept == {"trainer": {"private": {"key": 2}, "lr": 3}}
    assert dropped == [r"trainer\.private.key"]


def test_infer_types_tells_bool_int_float_str_list_null_and_empty_dict_apart():
    tree = {"flag": True, "n": 3, "x": 0.5, "s": "a", "l": [1], "t": (1,), "none": None, "e": {}, "sub": {"k": False}}
    assert infer_types(tree) == {
        "flag": "bool",
        "n": "int",
        "x": "float",
        "s": "str",
        "l": "list",
        "t": "list",
        "none": "null",
        "e": "dict",
        "sub": {"k": "bool"},
    }
    assert infer_types({"when": object()}) == {"when": "unknown"}
