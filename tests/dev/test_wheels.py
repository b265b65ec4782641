"""The tests' wheelhouse (kray.dev.wheels): exact pins only, a cached wheel is never rebuilt, a failed build names
the requirement and pip's reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.dev.wheels import WheelBuildError, wheelhouse


@pytest.mark.parametrize("requirement", ["pendulum", "pendulum>=2.1", "pendulum==", "pendulum==2.*"])
def test_only_exact_pins_are_accepted(tmp_path: Path, requirement: str) -> None:
    with pytest.raises(ValueError, match="exact pin"):
        wheelhouse([requirement], where=tmp_path, timeout=60)


def test_a_cached_wheel_is_found_by_its_normalized_name_and_not_rebuilt(tmp_path: Path) -> None:
    cached = tmp_path / "Zope_Interface-5.4.0-cp311-cp311-linux_x86_64.whl"
    cached.write_bytes(b"not a wheel: pip would fail on it, so a rebuild would show")
    assert wheelhouse(["zope.interface==5.4.0"], where=tmp_path, timeout=60) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == [cached.name]


def test_a_failed_build_names_the_requirement_and_leaves_no_scratch(tmp_path: Path) -> None:
    where = tmp_path / "wheels"
    with pytest.raises(WheelBuildError, match=r"pip wheel kray-no-such-package-0a1b==0\.0\.1 exited"):
        wheelhouse(["kray-no-such-package-0a1b==0.0.1"], where=where, timeout=120)
    assert [p.name for p in tmp_path.iterdir()] == ["wheels"]
    assert list(where.iterdir()) == []
