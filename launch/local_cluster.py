"""A private, loopback-only local Ray head for trying `launch.submit` on one machine.

    python -m launch.local_cluster start  [--name N] [--num-cpus C] [--num-gpus G] [--no-auth]
    python -m launch.local_cluster status [--name N]
    python -m launch.local_cluster env    [--name N]        # export lines for clients (eval "$(...)")
    python -m launch.local_cluster stop   [--name N] [--purge]

Why not plain ``ray start --head`` / ``ray stop``:
  * ``ray stop`` kills EVERY Ray process of the machine (other people's clusters and tests too).
    ``stop`` here only signals processes of *this* cluster: the ``ray start --block`` process we
    launched in its own session (and its process group), plus every process that inherited this
    cluster's unique marker variable ``ASCL_RAY_LOCAL_CLUSTER`` (raylet workers, job supervisors and
    job drivers, which Ray starts in new sessions).
  * Default ports collide with other local Ray instances: every port here is a free one picked at
    start, everything binds to 127.0.0.1, and the cluster has its own ``--temp-dir``
    (``/tmp/ascl_ray_<name>``), so its ``ray_current_cluster`` file and logs are private too.
  * Token auth: a fresh token is written to ``<temp-dir>/auth_token`` (mode 600) and the head runs
    with ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<that file>``. Clients need
    ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<that file>`` (printed by ``start`` and ``env``);
    ``launch.submit`` reads ``RAY_AUTH_TOKEN_PATH`` itself. ``--no-auth`` starts the head with
    ``RAY_AUTH_MODE=disabled`` (acceptable only because it listens on loopback).

State (ports, pids, marker) lives in ``<temp-dir>/ascl_cluster.json``; the head's output in
``<temp-dir>/ray_start.log``; Ray's own logs under ``<temp-dir>/session_latest/logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # `python launch/local_cluster.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launch._auth import client_auth_env  # noqa: E402

HOST = "127.0.0.1"
MARKER_VAR = "ASCL_RAY_LOCAL_CLUSTER"
STATE_FILE = "ascl_cluster.json"
# Ray turns --node-ip-address=127.0.0.1 into the machine's routable IP unless multi-node support is
# off (its macOS/Windows single-node mode): with this every process of the cluster (raylet, workers,
# job drivers: they inherit the head's env) advertises and dials 127.0.0.1 only.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PORT_NAMES = ("gcs", "dashboard", "dashboard_agent_listen", "dashboard_agent_grpc", "runtime_env_agent",
              "metrics_export", "ray_client_server", "node_manager", "object_manager",
              "autoscaler_metrics", "dashboard_metrics")


class ClusterError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- helpers
def default_temp_dir(name: str) -> Path:
    # short on purpose: Ray puts unix sockets under <temp-dir>/session_*/sockets (107-char limit)
    return Path("/tmp") / f"ascl_ray_{name}"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they are distinct)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ray_binary() -> str:
    cand = Path(sys.executable).parent / "ray"
    if cand.exists():
        return str(cand)
    found = shutil.which("ray")
    if not found:
        raise ClusterError("`ray` CLI not found next to this Python nor on PATH (pip install 'ray[default]')")
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies count as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _proc_environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:          # gone, or another user's process (we can't and needn't touch those)
        return False


def cluster_pids(state: dict) -> set[int]:
    """Live pids of THIS cluster: the `ray start --block` leader, its process group, and every
    process carrying this cluster's marker variable. Never our own pid or our ancestors."""
    me = os.getpid()
    skip = {me}
    p = me
    while p > 1:  # ancestors (a shell that happens to carry the marker must not be killed)
        try:
            with open(f"/proc/{p}/stat") as f:
                p = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        skip.add(p)
    needle = f"{MARKER_VAR}={state['marker']}".encode()
    pgid = state.get("pgid")
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in skip:
            continue
        in_group = False
        if pgid:
            try:
                in_group = os.getpgid(pid) == pgid
            except OSError:
                continue
        if (in_group or _proc_environ_has(pid, needle)) and pid_alive(pid):
            found.add(pid)
    return found


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {p for p in left if pid_alive(p)}
        if left:
            time.sleep(0.2)
    return {p for p in left if pid_alive(p)}


def http_get(url: str, token_path: Optional[str], timeout: float = 3.0) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token_path and Path(token_path).is_file():
        req.add_header("Authorization", "Bearer " + Path(token_path).read_text().strip())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


# ----------------------------------------------------------------------------- state
def state_path(temp_dir: Path) -> Path:
    return temp_dir / STATE_FILE


def load_state(temp_dir: Path) -> Optional[dict]:
    p = state_path(temp_dir)
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def export_lines(state: dict) -> list[str]:
    auth_env = client_auth_env(state["token_path"]) if state["auth"] else {"RAY_AUTH_MODE": "disabled"}
    return [f"export RAY_ADDRESS={state['dashboard_url']}"] + \
        [f"export {k}={shlex.quote(v)}" for k, v in auth_env.items()]


def gcs_address(state: dict) -> str:
    return f"{HOST}:{state['ports']['gcs']}"


def client_env(state: dict) -> dict:
    """os.environ for a Ray client talking to this cluster (ray status / ray job ...)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env.update(client_auth_env(state["token_path"]) if state["auth"] else {"RAY_AUTH_MODE": "disabled"})
    env.update(LOOPBACK_ENV)
    return env


def ray_status(state: dict, timeout: float = 60, connect_timeout_s: Optional[int] = None) -> subprocess.CompletedProcess:
    """`ray status --address <this cluster's GCS>` (rc 0 = up). ``connect_timeout_s`` bounds how long
    it waits for a GCS that is not there (Ray's default retries for ~40 s)."""
    env = client_env(state)
    if connect_timeout_s is not None:
        env["RAY_gcs_rpc_server_connect_timeout_s"] = str(connect_timeout_s)
        env["RAY_gcs_rpc_server_reconnect_timeout_s"] = str(connect_timeout_s)
    return subprocess.run([ray_binary(), "status", "--address", gcs_address(state)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def is_running(state: dict) -> bool:
    return pid_alive(state["pid"]) and port_open(state["ports"]["gcs"])


# ----------------------------------------------------------------------------- commands
def start(name: str = "default", temp_dir: Optional[str] = None, num_cpus: Optional[float] = None,
          num_gpus: Optional[int] = None, auth: bool = True, timeout: float = 120.0,
          object_store_mb: Optional[int] = None, quiet: bool = False) -> dict:
    tdir = Path(temp_dir) if temp_dir else default_temp_dir(name)
    old = load_state(tdir)
    if old and cluster_pids(old):
        raise ClusterError(f"cluster {name!r} already running (pid {old['pid']}, {old['dashboard_url']}); "
                           f"`python -m launch.local_cluster stop --name {name}` first")
    tdir.mkdir(parents=True, exist_ok=True)
    os.chmod(tdir, 0o700)
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    marker = f"{tdir}#{secrets.token_hex(8)}"
    token_path = tdir / "auth_token"

    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
    env[MARKER_VAR] = marker
    # `python` in a job entrypoint resolves on the head's PATH: make it this interpreter's venv
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(LOOPBACK_ENV)
    # Prometheus ports that `ray start` has no flag for (defaults 44217/44227 clash between clusters)
    env["AUTOSCALER_METRIC_PORT"] = str(ports["autoscaler_metrics"])
    env["DASHBOARD_METRIC_PORT"] = str(ports["dashboard_metrics"])
    if auth:
        token_path.unlink(missing_ok=True)
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        env.update(client_auth_env(str(token_path)))   # the head's own processes: token mode
    else:
        token_path.unlink(missing_ok=True)
        env["RAY_AUTH_MODE"] = "disabled"

    cmd = [ray_binary(), "start", "--head", "--block",
           f"--node-ip-address={HOST}", f"--port={ports['gcs']}",
           "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={ports['dashboard']}",
           f"--dashboard-agent-listen-port={ports['dashboard_agent_listen']}",
           f"--dashboard-agent-grpc-port={ports['dashboard_agent_grpc']}",
           f"--runtime-env-agent-port={ports['runtime_env_agent']}",
           f"--metrics-export-port={ports['metrics_export']}",
           f"--ray-client-server-port={ports['ray_client_server']}",
           f"--node-manager-port={ports['node_manager']}",
           f"--object-manager-port={ports['object_manager']}",
           f"--temp-dir={tdir}", "--disable-usage-stats"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus:g}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    if object_store_mb:
        cmd.append(f"--object-store-memory={object_store_mb * 1024 * 1024}")

    log_path = tdir / "ray_start.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(tdir), start_new_session=True)
    state = {"name": name, "temp_dir": str(tdir), "pid": proc.pid, "pgid": proc.pid, "marker": marker,
             "ports": ports, "auth": auth, "token_path": str(token_path) if auth else None,
             "dashboard_url": f"http://{HOST}:{ports['dashboard']}", "gcs_address": f"{HOST}:{ports['gcs']}",
             "log": str(log_path), "cmd": cmd, "started_at": time.time()}
    state_path(tdir).write_text(json.dumps(state, indent=2))

    # ready = the Jobs API answers (dashboard up, token accepted)
    url = state["dashboard_url"] + "/api/jobs/"
    last = ""
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text()[-3000:]
            stop(temp_dir=str(tdir), quiet=True)
            raise ClusterError(f"`ray start` exited with {proc.returncode}; log {log_path}:\n{tail}")
        if time.monotonic() - t0 > timeout:
            stop(temp_dir=str(tdir), quiet=True)
            raise ClusterError(f"cluster not ready after {timeout:.0f}s ({last}); log {log_path}")
        try:
            code, body = http_get(url, state["token_path"])
            if code == 200:
                break
            last = f"HTTP {code}: {body[:200]}"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    state["startup_s"] = round(time.monotonic() - t0, 2)
    state_path(tdir).write_text(json.dumps(state, indent=2))
    if not quiet:
        print(f"Ray head '{name}' up in {state['startup_s']:.1f}s (pid {proc.pid})")
        print(f"  dashboard / jobs address: {state['dashboard_url']}")
        print(f"  GCS address (ray status --address): {state['gcs_address']}")
        print(f"  auth: {'token, ' + state['token_path'] if auth else 'DISABLED (loopback only)'}")
        print(f"  logs: {log_path}, {tdir}/session_latest/logs")
        print("For clients (or: eval \"$(python -m launch.local_cluster env"
              f"{'' if name == 'default' else ' --name ' + name})\"):")
        for ln in export_lines(state):
            print("  " + ln)
    return state


def status(name: str = "default", temp_dir: Optional[str] = None, verbose: bool = True) -> int:
    tdir = Path(temp_dir) if temp_dir else default_temp_dir(name)
    state = load_state(tdir)
    if not state:
        print(f"no cluster '{name}' (no {state_path(tdir)})")
        return 3
    pids = cluster_pids(state)
    up = is_running(state)
    print(f"cluster '{state['name']}': {'RUNNING' if up else 'NOT RUNNING'}; leader pid {state['pid']} "
          f"{'alive' if pid_alive(state['pid']) else 'gone'}; {len(pids)} process(es) of this cluster")
    print(f"  dashboard {state['dashboard_url']}  gcs {state['gcs_address']}  temp-dir {state['temp_dir']}")
    if up and verbose:
        r = ray_status(state)
        print(r.stdout.rstrip() or r.stderr.rstrip())
    return 0 if up else 1


def stop(name: str = "default", temp_dir: Optional[str] = None, timeout: float = 30.0, purge: bool = False,
         quiet: bool = False, signaled: Optional[set] = None) -> bool:
    """Stop only this cluster's processes. Returns True when nothing of it is left.
    ``signaled`` (optional) collects every pid this call sent a signal to."""
    signaled = set() if signaled is None else signaled
    tdir = Path(temp_dir) if temp_dir else default_temp_dir(name)
    state = load_state(tdir)
    say = (lambda *a: None) if quiet else print
    if not state:
        say(f"no cluster '{name}' (no {state_path(tdir)}); nothing to stop")
        if purge and (tdir / "ray_start.log").is_file():   # a dir this helper made, already stopped
            shutil.rmtree(tdir, ignore_errors=True)
        return True
    t0 = time.monotonic()
    leader = state["pid"]
    # 1. graceful: Ctrl-C for `ray start --block` runs Ray's own shutdown of the node's processes
    if pid_alive(leader):
        signaled.add(leader)
        _signal_all([leader], signal.SIGINT)
        _wait_gone({leader}, min(15.0, timeout / 2))
    try:  # started by this very process (tests, scripts): reap it, leave no zombie
        os.waitpid(leader, os.WNOHANG)
    except ChildProcessError:
        pass
    # 2. whatever is left of this cluster (workers, job drivers in their own sessions): TERM, then KILL
    left = cluster_pids(state)
    if left:
        signaled.update(left)
        _signal_all(left, signal.SIGTERM)
        left = _wait_gone(left, 5.0)
    deadline = time.monotonic() + max(1.0, timeout - (time.monotonic() - t0))
    while time.monotonic() < deadline:
        left = cluster_pids(state)
        if not left:
            break
        signaled.update(left)
        _signal_all(left, signal.SIGKILL)
        time.sleep(0.3)
    left = cluster_pids(state)
    gone = not left and not port_open(state["ports"]["gcs"])
    if gone:
        state_path(tdir).unlink(missing_ok=True)
        if purge:
            shutil.rmtree(tdir, ignore_errors=True)
        say(f"stopped cluster '{state['name']}' in {time.monotonic() - t0:.1f}s"
            f"{' (temp-dir removed)' if purge else f'; logs kept in {tdir}'}")
    else:
        say(f"cluster '{state['name']}' NOT fully stopped: pids left {sorted(left)}, "
            f"gcs port {'open' if port_open(state['ports']['gcs']) else 'closed'}")
    return gone


# ----------------------------------------------------------------------------- CLI
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.local_cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--name", default="default", help="cluster name (default: %(default)s)")
        p.add_argument("--temp-dir", help="Ray --temp-dir and state dir (default /tmp/ascl_ray_<name>)")

    p = sub.add_parser("start", help="start a loopback-only head with free ports and its own temp dir")
    common(p)
    p.add_argument("--num-cpus", type=float, help="logical CPUs (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs (default: autodetect)")
    p.add_argument("--object-store-mb", type=int, help="object store size in MiB (default: Ray's)")
    p.add_argument("--no-auth", action="store_true",
                   help="RAY_AUTH_MODE=disabled for the head (it only listens on 127.0.0.1)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the Jobs API")
    p.add_argument("--json", action="store_true", help="print the state as JSON instead of text")
    p = sub.add_parser("status", help="is it up? (+ `ray status --address` of this cluster)")
    common(p)
    p = sub.add_parser("env", help="print export lines for clients: eval \"$(python -m launch.local_cluster env)\"")
    common(p)
    p = sub.add_parser("stop", help="stop ONLY this cluster (never `ray stop`)")
    common(p)
    p.add_argument("--purge", action="store_true", help="also delete the temp dir (logs)")
    p.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args(argv)

    try:
        if a.cmd == "start":
            st = start(a.name, a.temp_dir, a.num_cpus, a.num_gpus, auth=not a.no_auth, timeout=a.timeout,
                       object_store_mb=a.object_store_mb, quiet=a.json)
            if a.json:
                print(json.dumps(st, indent=2))
            return 0
        if a.cmd == "status":
            return status(a.name, a.temp_dir)
        if a.cmd == "env":
            st = load_state(Path(a.temp_dir) if a.temp_dir else default_temp_dir(a.name))
            if not st:
                print(f"# no cluster '{a.name}'", file=sys.stderr)
                return 3
            print("\n".join(export_lines(st)))
            return 0
        if a.cmd == "stop":
            return 0 if stop(a.name, a.temp_dir, timeout=a.timeout, purge=a.purge) else 1
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
