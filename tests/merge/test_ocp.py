"""IIB's 21-row acceptance table for OCP labels (merge.md B §4.2; iib main
tests/test_workers/test_tasks/test_build_merge_index_image.py:1078-1114 test_is_bundle_version_valid)."""

import pytest

from indexflow.errors import ValidationError
from indexflow.merge.ocp import is_bundle_version_valid, parse_index_ocp_version

TABLE = [
    ("=v4.5", "v4.6", False, False),
    ("v4.5-v4.7", "v4.6", False, True),
    ("=v4.9|=v4.10|>=v4.12", "v4.8", False, False),
    ("=v4.9|=v4.10|>=v4.12", "v4.9", False, True),
    ("=v4.9|=v4.10|>=v4.12", "v4.10", False, True),
    ("=v4.9|=v4.10|>=v4.12", "v4.11", False, False),
    ("=v4.9|=v4.10|>=v4.12", "v4.12", False, True),
    ("=v4.9|=v4.10|>=v4.13", "v4.13", False, True),
    ("=v4.5|=v4.6", "v4.6", False, True),
    ("=v4.5|v4.10", "v4.12", False, False),
    ("v4.5|>=v4.10", "v4.12", False, False),
    (">=v4.10", "v4.6", False, False),
    (">=v4.10", "v4.10", False, False),
    ("v4.5-v4.7", "v4.8", False, False),
    ("v4.6", "v4.6", False, True),
    ("v=4.6", "v4.6", False, False),
    ("v4.5,v4.6", "v4.6", False, True),
    ("v4.6,v4.5", "v4.10", False, True),
    ("tom_brady", "v4.6", False, False),
    ("", "v4.6", False, False),
    ("", "v4.6", True, True),
]


@pytest.mark.parametrize(("label", "index", "allow", "expected"), TABLE)
def test_is_bundle_version_valid(label, index, allow, expected):
    assert is_bundle_version_valid(label, index, allow) is expected


def test_missing_label_is_like_empty():
    assert is_bundle_version_valid(None, "v4.6", True) is True
    assert is_bundle_version_valid(None, "v4.6", False) is False


@pytest.mark.parametrize("bad", ["random-version", "v4.6,v4.5"])
def test_invalid_index_version_message(bad):
    with pytest.raises(ValidationError) as err:
        parse_index_ocp_version(bad)
    assert str(err.value) == f'Invalid OCP version, "{bad}", specified in Index Image'
    with pytest.raises(ValidationError):
        is_bundle_version_valid("v4.6", bad, False)


def test_an_index_version_past_pythons_digit_limit_is_the_same_sentence_cut_short():
    with pytest.raises(ValidationError) as err:  # was a ValueError traceback (int of 5,000 digits)
        parse_index_ocp_version("v4." + "9" * 5000)
    assert str(err.value).startswith('Invalid OCP version, "v4.999') and len(str(err.value)) < 200
