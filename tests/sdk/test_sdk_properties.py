"""Properties of key paths and filtering that must hold for any keys and any config tree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from launchbay.sdk import join_path, split_path
from launchbay.sdk.filtering import filter_tree, flatten, is_allowed, unflatten

# Keys may hold dots and any unicode but backslashes, which the path syntax reserves.
keys = st.text(alphabet=st.characters(blacklist_characters="\\", blacklist_categories=("Cs",)), min_size=1, max_size=8)
short_keys = st.sampled_from(["a", "b", "c", "a.b", "train", "trainer"])
key_paths = st.lists(keys, min_size=1, max_size=5).map(tuple)
prefixes = st.lists(st.lists(short_keys, min_size=1, max_size=3).map(tuple), max_size=3)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3))
values = st.recursive(
    st.one_of(scalars, st.lists(scalars, max_size=2)),
    lambda children: st.dictionaries(short_keys, children, max_size=3),
    max_leaves=10,
)
trees = st.dictionaries(short_keys, values, max_size=4)


@given(key_paths)
def test_join_then_split_gives_back_the_same_keys(parts):
    assert split_path(join_path(parts)) == parts


@given(prefixes, prefixes, st.lists(short_keys, min_size=1, max_size=4).map(tuple))
def test_a_path_under_any_exclude_prefix_is_never_allowed(include, exclude, parts):
    blocked = any(parts[: len(prefix)] == prefix for prefix in exclude)
    if blocked:
        assert not is_allowed(parts, include, exclude)
    assert not is_allowed(parts, include, [*exclude, parts])
    assert not is_allowed(parts, [*include, parts], [*exclude, parts[:1]])


@given(trees, prefixes, prefixes)
def test_filtering_keeps_a_subset_of_the_leaves_and_accounts_for_every_leaf(tree, include, exclude):
    leaves_in = flatten(tree)
    kept, dropped = filter_tree(tree, include, exclude)
    kept_leaves = flatten(kept)

    assert kept_leaves.items() <= leaves_in.items()
    assert sorted([*map(join_path, kept_leaves), *dropped]) == sorted(map(join_path, leaves_in))
    assert all(is_allowed(parts, include, exclude) for parts in kept_leaves)


@given(trees)
def test_unflatten_inverts_flatten(tree):
    assert unflatten(flatten(tree)) == tree


# A backslash before anything but a dot, a trailing one, or an empty key: W&B's parser hangs on
# the first; ours must raise at once, so each example runs under a short deadline.
plain = st.text(alphabet=st.characters(blacklist_characters="\\"), max_size=5)
malformed = st.one_of(
    st.builds(
        lambda a, c, b: f"{a}\\{c}{b}",
        st.text(max_size=5),
        st.characters(blacklist_characters="."),
        st.text(max_size=5),
    ),
    st.builds(lambda a: f"{a}\\", st.text(max_size=8)),
    # No backslash here: one before the dot would escape it and make a valid key.
    st.builds(lambda a, b: f"{a}..{b}", plain, plain),
    st.builds(lambda a: f".{a}", plain),
    st.builds(lambda a: f"{a}.", plain),
    st.just(""),
)


@settings(deadline=timedelta(milliseconds=200))
@given(malformed)
def test_malformed_paths_raise_value_error_and_never_hang(path):
    with pytest.raises(ValueError):
        split_path(path)


@given(trees, prefixes, prefixes)
def test_filter_tree_keeps_exactly_the_leaves_is_allowed_accepts(tree, include, exclude):
    kept, dropped = filter_tree(tree, include, exclude)

    leaves = flatten(tree)
    assert flatten(kept) == {parts: value for parts, value in leaves.items() if is_allowed(parts, include, exclude)}
    assert dropped == [join_path(parts) for parts in leaves if not is_allowed(parts, include, exclude)]
