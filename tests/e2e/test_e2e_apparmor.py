"""AppArmor: the sandbox profile (apparmor/code-executor-sandbox) is applied to every
container when the host kernel has AppArmor and the profile is loaded (`make
apparmor-load`). On a kernel without AppArmor the server says so in `health`, and this test
skips with that reason (it is then counted as skipped, never as passed)."""

from __future__ import annotations

import pytest

PROFILE = "code-executor-sandbox"


def test_the_sandbox_runs_confined_by_our_apparmor_profile(server):
    health = server.call("health").sc["sandbox"]
    if not health.get("apparmor"):
        pytest.skip(f"AppArmor not applied on this host: {health.get('apparmorNote')}")
    assert health["apparmor"] == PROFILE, health
    r = server.execute("python", "print(open('/proc/self/attr/current').read().strip())")
    assert r["success"] is True, r
    assert r["output"].strip() == f"{PROFILE} (enforce)", r
    # The profile denies writes to /proc/sys even where the filesystem would allow them.
    r = server.execute(
        "python",
        "import errno\ntry:\n    open('/proc/sys/kernel/hostname','w').write('x')\n    print('written')\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno])\n",
    )
    assert r["output"].strip() in ("EACCES", "EROFS", "EPERM"), r


def test_health_reports_the_apparmor_state_either_way(server):
    health = server.call("health").sc["sandbox"]
    assert health["runtime"] in ("runc", "runsc") or health["runtime"].startswith("runsc-"), health
    if health.get("apparmor"):
        assert health.get("apparmorNote") is None, health
    else:
        note = health.get("apparmorNote") or ""
        assert "AppArmor" in note, f"no reason given for running without AppArmor: {health}"
