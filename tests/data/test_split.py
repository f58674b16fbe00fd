from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from medsr.data.split import UNUSED, SplitSpec, assign_splits, group_key
from medsr.errors import MedsrError


def _patients(sizes: dict[str, int]) -> list[str]:
    return [f"patient:{p}" for p, n in sizes.items() for _ in range(n)]


SIZES = {f"P{i:02d}": 5 + (i * 7) % 23 for i in range(30)}


def _assert_no_patient_in_two_splits(groups: list[str], splits: list[str]) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for group, split in zip(groups, splits):
        if split != UNUSED:
            seen[group].add(split)
    assert all(len(s) == 1 for s in seen.values()), {g: s for g, s in seen.items() if len(s) > 1}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractions_keep_patients_whole_and_land_near_the_targets(seed):
    groups = _patients(SIZES)
    splits = assign_splits(groups, SplitSpec.parse("0.7,0.15,0.15"), seed=seed)
    _assert_no_patient_in_two_splits(groups, splits)
    counts = Counter(splits)
    assert UNUSED not in counts
    for name, target in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert abs(counts[name] / len(groups) - target) < 0.03


def test_counts_are_met_exactly_without_leakage():
    groups = _patients(SIZES)
    splits = assign_splits(groups, SplitSpec.parse("200,50,50"), seed=3)
    counts = Counter(splits)
    assert (counts["train"], counts["val"], counts["test"]) == (200, 50, 50)
    _assert_no_patient_in_two_splits(groups, splits)


def test_seed_is_deterministic_and_matters():
    groups = _patients(SIZES)
    spec = SplitSpec.parse("0.6,0.2,0.2")
    assert assign_splits(groups, spec, seed=7) == assign_splits(groups, spec, seed=7)
    assert assign_splits(groups, spec, seed=7) != assign_splits(groups, spec, seed=8)


def test_few_patients_still_fill_every_split():
    groups = _patients({"big": 300, "a": 20, "b": 25, "c": 3})
    splits = assign_splits(groups, SplitSpec.parse("0.7,0.15,0.15"))
    assert set(splits) == {"train", "val", "test"}
    _assert_no_patient_in_two_splits(groups, splits)


def test_bad_specs_and_impossible_counts_are_refused():
    for text in ("0.5,0.5", "0.7,0.2,0.2", "a,b,c", "0,0,0"):
        with pytest.raises(ValueError):
            SplitSpec.parse(text)
    with pytest.raises(MedsrError, match="asks for 100 images but only 10"):
        assign_splits(_patients({"x": 10}), SplitSpec.parse("80,10,10"))
    with pytest.raises(MedsrError, match="could place only"):  # enough images, but only by sharing a patient
        assign_splits(_patients({"a": 50, "b": 50}), SplitSpec.parse("60,40,0"))


def test_group_falls_back_from_patient_to_series_to_file():
    assert group_key("P1", "1.2", "/a.dcm") == "patient:P1"
    assert group_key(" ", "1.2", "/a.dcm") == "series:1.2"
    assert group_key("", "", "/a.dcm") == "file:/a.dcm"


def test_stratified_split_gives_every_split_its_share_of_each_modality():
    groups, modalities = [], []
    for index in range(12):
        for _ in range(5):
            groups.append(f"patient:CT{index}")
            modalities.append("CT")
    for index in range(4):
        groups.append(f"patient:CR{index}")
        modalities.append("CR")
    splits = assign_splits(groups, SplitSpec.parse("0.5,0.25,0.25"), seed=0, strata=modalities)
    _assert_no_patient_in_two_splits(groups, splits)
    cr_splits = {s for s, m in zip(splits, modalities) if m == "CR"}
    assert cr_splits == {"train", "val", "test"}
