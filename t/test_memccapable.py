"""libmemcached's memccapable -a (text protocol conformance), run against
the server under test and stock memcached side by side."""

import re
import shutil
import subprocess

import pytest

MEMCCAPABLE = shutil.which("memccapable") or "/usr/bin/memccapable"


def run_memccapable(port):
    p = subprocess.run([MEMCCAPABLE, "-a", "-t", "5", "-h", "127.0.0.1",
                        "-p", str(port)], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    out = p.stdout.decode(errors="replace")
    results = {}
    for line in out.splitlines():
        m = re.match(r"^(.*\S)\s+\[(pass|fail|skip)\]\s*$", line)
        if m:
            results[m.group(1)] = m.group(2)
    return p.returncode, results, out + p.stderr.decode(errors="replace")


def test_memccapable_ascii(server, reference):
    if not shutil.which("memccapable"):
        pytest.skip("memccapable (libmemcached-tools) not installed")
    ref_rc, ref, ref_out = run_memccapable(reference.port)
    rc, res, out = run_memccapable(server.port)
    assert ref and all(v == "pass" for v in ref.values()), ref_out
    assert len(ref) >= 25, ref_out
    failed = {k: v for k, v in res.items() if v != "pass"}
    assert not failed, "memccapable failures:\n" + out
    assert res == ref, "results differ:\nserver:\n%s\nreference:\n%s" % (
        out, ref_out)
    assert rc == ref_rc == 0, out
    assert server.alive()
