"""The README's first command ends in scripts/cluster.sh (issue 5: "the
README's first command starts the cluster and pymemcache can set on one port
and get on another"). Run it as a user would, on free ports, then Ctrl-C it.
"""

import os
import signal
import socket
import subprocess
import time

import pytest
from pymemcache.client.base import Client

from cluster import BUILDDIR, cluster_support
from conftest import free_port, _die_with_parent

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                      "scripts", "cluster.sh")


@pytest.fixture
def script_cluster():
    why = cluster_support()
    if why:
        pytest.skip(why)
    ports = [free_port() for _ in range(3)]
    env = dict(os.environ, FTM_BUILDDIR=BUILDDIR,
               FTM_PORTS=" ".join(map(str, ports)),
               FTM_META_PORT=str(free_port()))
    p = subprocess.Popen(["bash", SCRIPT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         preexec_fn=_die_with_parent, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 60
    ready = False
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "memcached on 127.0.0.1:%d" % ports[0] in line:
            ready = True
            break
    if not ready:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        pytest.fail("cluster.sh did not report ready:\n" + "".join(lines))
    yield p, ports, lines
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_cluster_script_serves_set_on_one_port_get_on_another(script_cluster):
    p, ports, _ = script_cluster
    a = Client(("127.0.0.1", ports[0]), timeout=10)
    c = Client(("127.0.0.1", ports[2]), timeout=10)
    for i in range(50):
        assert a.set("readme-%d" % i, "v%d" % i, noreply=False)
    for i in range(50):
        assert c.get("readme-%d" % i) == b"v%d" % i


def test_cluster_script_stops_every_server_on_ctrl_c(script_cluster):
    p, ports, lines = script_cluster
    os.kill(p.pid, signal.SIGINT)   # the script is what Ctrl-C reaches
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("cluster.sh did not stop within 30 s of SIGINT")
    assert p.returncode == 0, "".join(lines) + out
    assert "stopping" in out
    # No server is left behind: nothing answers on the ports any more.
    for port in ports:
        s = socket.socket()
        s.settimeout(1)
        try:
            assert s.connect_ex(("127.0.0.1", port)) != 0, \
                "port %d still served after Ctrl-C" % port
        finally:
            s.close()
