"""``json_sync`` reads ``ip -j`` listings: one torn by a netlink dump that changed underneath (seen in the e2e
teardown: the JSON cut at its start) is asked again; a command that never answers readably is an error naming the
step. A script in the place of ``ip`` prints the torn output (the kernel's race cannot be caused on demand)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kray.local.node.netcmd import LISTING_ATTEMPTS, json_sync
from kray.local.sandbox import SandboxError

GOOD = '[{"ifindex":1,"ifname":"lo"}]'
TORN = 'index":1,"ifname":"lo"}]'
# Prints the torn listing `torn` times (counted in a file), then the whole one.
LISTER = """
import sys
from pathlib import Path
count, torn = Path(sys.argv[1]), int(sys.argv[2])
seen = int(count.read_text()) if count.exists() else 0
count.write_text(str(seen + 1))
print(sys.argv[3] if seen < torn else sys.argv[4])
"""


def _lister(tmp_path: Path, torn: int) -> tuple[str, ...]:
    return (sys.executable, "-c", LISTER, str(tmp_path / "count"), str(torn), TORN, GOOD)


def test_a_torn_listing_is_asked_again(tmp_path: Path) -> None:
    assert json_sync("listing links", *_lister(tmp_path, torn=LISTING_ATTEMPTS - 1)) == [{"ifindex": 1, "ifname": "lo"}]
    assert (tmp_path / "count").read_text() == str(LISTING_ATTEMPTS)


def test_a_listing_never_readable_is_an_error_naming_the_step(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"(?s)^listing links: .* unreadable output 3 times"):
        json_sync("listing links", *_lister(tmp_path, torn=LISTING_ATTEMPTS))
