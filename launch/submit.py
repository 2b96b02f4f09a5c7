"""Submit ascl-ray training to a running Ray cluster as a Ray job (Ray Jobs Python SDK).

    python -m launch.submit [options] [--] [hydra overrides...]
    python -m launch.submit --follow algorithm=grpo trainer.iterations=30
    python -m launch.submit --dry-run rollout=vllm_gpu learner=zero3_gpu model=smollm2_135m

The job's entrypoint is ``python -m ascl_ray.cli train cluster=ray_job <overrides>``
(``conf/cluster/ray_job.yaml``: ``cluster.address: auto``, so the driver joins the cluster it runs
on). ``--entrypoint CMD`` replaces it with any shell command (smoke tests, ``ascl-ray build-tiny``).

Code shipping: the repo (``--working-dir``, default: this checkout) is zipped and uploaded with the
job, minus ``.venv runs artifacts wandb outputs .git *.safetensors .cache __pycache__`` (plus
``--exclude``; Ray also honours .gitignore). Ray's upload limit is ~500 MiB, so checkpoints and
venvs must never ride along. Models are therefore NOT shipped: point ``model.path`` at a path that
exists on the nodes, or let the default tiny model be built there (``model.build_tiny: true``).

Dependencies: the job runs with the nodes' Python. Install ascl-ray's deps on every node
(``make install FLAVOR=gpu`` in the cluster's setup commands, see launch/cluster.example.yaml) and,
if that is a venv not first on the nodes' PATH, pass ``--py-executable /path/to/venv/bin/python``
(used for the entrypoint and, via runtime_env ``py_executable``, for the job's workers).
``--pip`` (requirements file or package specs) makes Ray build a per-job virtualenv on each node
instead: slow (minutes, torch/vLLM are GBs) and only sensible for small additions.

Auth (Ray 2.60): clusters started by ``ray start`` run with token auth, but Ray clients default to
``RAY_AUTH_MODE=disabled`` and send no token. This tool always sends the token it finds (``--auth-
token-path``, else ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``: Ray's own order)
as an ``Authorization: Bearer`` header; no token found = submit unauthenticated (``--auth disabled``
forces that). RAY_AUTH_* never go into the job's runtime_env: the nodes already have them, and
overriding them there breaks every worker of the job.

Address: ``--address``, else ``$RAY_API_SERVER_ADDRESS`` / ``$RAY_ADDRESS``, else http://127.0.0.1:8265 (the Ray dashboard / Jobs
API address, not the GCS one). For a remote cluster, tunnel it: ``ray dashboard cluster.yaml`` or
``ssh -L 8265:127.0.0.1:8265 head``.

Exit codes: 0 submitted (or, with --follow/--wait, SUCCEEDED); 1 job FAILED/STOPPED or timed out;
2 usage/config error; 3 cluster unreachable; 4 authentication rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # `python launch/submit.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launch._auth import AUTH_ENV_VARS, AuthConfigError, Token, resolve_token  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_EXCLUDES = [".venv", "runs", "artifacts", "wandb", "outputs", ".git", "*.safetensors", ".cache",
                    "__pycache__", ".pytest_cache", ".hypothesis"]
DEFAULT_ENV_VARS = {
    "HF_HUB_OFFLINE": "1",            # nodes never reach the hub: models come from local paths
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",          # driver logs stream to `ray job logs` as they happen
}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4


class SubmitError(RuntimeError):
    def __init__(self, msg: str, code: int = EXIT_USAGE):
        super().__init__(msg)
        self.code = code


# ----------------------------------------------------------------------------- building the submission
def normalize_address(address: str) -> str:
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise SubmitError(f"{address}: that is a Ray Client address; the Jobs API wants the dashboard "
                          f"address, e.g. http://127.0.0.1:8265")
    if "://" not in address:
        address = "http://" + address
    return address


def parse_env(items: list[str]) -> dict[str, str]:
    env = dict(DEFAULT_ENV_VARS)
    for item in items:
        if "=" not in item:
            raise SubmitError(f"--env {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        env[k] = v
    bad = sorted(k for k in env if k in AUTH_ENV_VARS or k.startswith("RAY_AUTH"))
    if bad:
        raise SubmitError(f"--env {', '.join(bad)}: auth variables must not go into the job's runtime_env "
                          f"(it breaks every worker); set them for the client only")
    return env


def build_entrypoint(overrides: list[str], entrypoint: Optional[str], python: str) -> str:
    if entrypoint:
        if overrides:
            raise SubmitError("--entrypoint replaces the training command: drop the hydra overrides "
                              f"({' '.join(overrides)}) or put them in the entrypoint")
        return entrypoint
    args = list(overrides)
    if not any(o.lstrip("+~").startswith("cluster=") for o in args):
        args.insert(0, "cluster=ray_job")
    return shlex.join([python, "-m", "ascl_ray.cli", "train", *args])


def build_runtime_env(working_dir: str, excludes: list[str], env_vars: dict[str, str], pip: list[str],
                      py_executable: Optional[str]) -> dict:
    wd = Path(working_dir).expanduser().resolve()
    if not wd.is_dir():
        raise SubmitError(f"--working-dir {working_dir}: not a directory")
    rt: dict = {"working_dir": str(wd), "excludes": list(dict.fromkeys(DEFAULT_EXCLUDES + excludes)),
                "env_vars": env_vars}
    if pip:
        if len(pip) == 1 and (wd / pip[0]).is_file():
            rt["pip"] = str(wd / pip[0])          # a requirements file (read client side by Ray)
        elif len(pip) == 1 and Path(pip[0]).is_file():
            rt["pip"] = str(Path(pip[0]).resolve())
        else:
            rt["pip"] = list(pip)
    if py_executable:
        rt["py_executable"] = py_executable
    return rt


def build_submission(a: argparse.Namespace) -> dict:
    python = a.py_executable or "python"
    sub = {
        "entrypoint": build_entrypoint(a.overrides, a.entrypoint, python),
        "submission_id": a.submission_id or f"ascl-ray-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "runtime_env": build_runtime_env(a.working_dir, a.exclude, parse_env(a.env), a.pip, a.py_executable),
        "metadata": {"name": a.job_name or "ascl-ray-train", "submitted_by": "launch.submit"},
    }
    if a.entrypoint_num_cpus is not None:
        sub["entrypoint_num_cpus"] = a.entrypoint_num_cpus
    if a.entrypoint_num_gpus is not None:
        sub["entrypoint_num_gpus"] = a.entrypoint_num_gpus
    return sub


def cli_equivalent(address: str, sub: dict, token: Optional[Token]) -> str:
    """The same submission as a `ray job submit` command line (token never printed)."""
    prefix = ""
    if token:
        prefix = "RAY_AUTH_MODE=token " + (f"RAY_AUTH_TOKEN_PATH={shlex.quote(token.path)} " if token.path else "")
    parts = ["ray", "job", "submit", "--address", address, "--submission-id", sub["submission_id"],
             "--runtime-env-json", json.dumps(sub["runtime_env"]), "--metadata-json", json.dumps(sub["metadata"])]
    if "entrypoint_num_cpus" in sub:
        parts += ["--entrypoint-num-cpus", str(sub["entrypoint_num_cpus"])]
    if "entrypoint_num_gpus" in sub:
        parts += ["--entrypoint-num-gpus", str(sub["entrypoint_num_gpus"])]
    return prefix + shlex.join(parts) + " -- " + sub["entrypoint"]


# ----------------------------------------------------------------------------- talking to the cluster
def _resolve_auth(a: argparse.Namespace) -> Optional[Token]:
    if a.auth == "disabled":
        return None
    try:
        token = resolve_token(a.auth_token_path)
    except AuthConfigError as e:
        raise SubmitError(f"auth: {e}") from None
    if token is None and a.auth == "token":
        raise SubmitError("--auth token: no token found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token; "
                          "for the local helper: eval \"$(python -m launch.local_cluster env)\")")
    return token


ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def env_address() -> Optional[str]:
    for k in ADDRESS_ENV_VARS:
        if os.environ.get(k):
            return os.environ[k]
    return None


@contextlib.contextmanager
def _without_address_env():
    """Ray's SDK lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS override an explicit address; ours wins."""
    saved = {k: os.environ.pop(k) for k in ADDRESS_ENV_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str, token: Optional[Token]):
    """A JobSubmissionClient, or SubmitError with a clear message (unreachable / auth rejected)."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        with _without_address_env():
            return JobSubmissionClient(address, headers=token.header() if token else None)
    except AuthenticationError as e:
        raise _auth_error(address, token, str(e)) from None
    except ConnectionError as e:
        msg = str(e)
        if any(s in msg for s in ("401", "403", "nauthorized", "orbidden", "uthentication")):
            raise _auth_error(address, token, msg) from None
        raise SubmitError(
            f"cannot reach a Ray cluster's Jobs API at {address} ({msg.splitlines()[0][:300]}).\n"
            f"Is the cluster running and is this its dashboard address (default port 8265)? Local: "
            f"`python -m launch.local_cluster start` then eval \"$(python -m launch.local_cluster env)\"; "
            f"remote: `ray dashboard launch/cluster.example.yaml` (port-forward) or pass --address / set "
            f"RAY_ADDRESS.", EXIT_UNREACHABLE) from None


def _auth_error(address: str, token: Optional[Token], detail: str) -> SubmitError:
    have = f"sent the token from {token.source}" if token else "sent no token (none found)"
    return SubmitError(
        f"the cluster at {address} rejected authentication: {detail.splitlines()[0][:300]}\n"
        f"This client {have}. Ray 2.60 clusters started with `ray start` use token auth: provide the "
        f"cluster's token via RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN / --auth-token-path "
        f"(for `ray job ...` CLI use also export RAY_AUTH_MODE=token).", EXIT_AUTH)


def _submit(client, address: str, token: Optional[Token], sub: dict) -> str:
    from ray.exceptions import AuthenticationError

    try:
        return client.submit_job(**sub)
    except AuthenticationError as e:
        raise _auth_error(address, token, str(e)) from None
    except RuntimeError as e:
        if any(s in str(e) for s in ("401", "403")):
            raise _auth_error(address, token, str(e)) from None
        raise SubmitError(f"submission failed: {e}", EXIT_JOB_FAILED) from None


def wait_for(client, job_id: str, timeout: Optional[float], follow: bool, out=sys.stdout) -> str:
    """Block until the job is terminal; with follow, stream its logs meanwhile. Returns the status."""
    deadline = None if timeout is None else time.monotonic() + timeout

    if follow:
        async def tail():
            async for chunk in client.tail_job_logs(job_id):
                out.write(chunk)
                out.flush()
        try:
            asyncio.run(asyncio.wait_for(tail(), None if deadline is None else max(1.0, deadline - time.monotonic())))
        except asyncio.TimeoutError:
            pass
    while True:
        st = client.get_job_status(job_id)
        status = str(getattr(st, "value", st))
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return f"TIMEOUT({status})"
        time.sleep(1.0)


# ----------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m launch.submit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="hydra overrides for `ascl-ray train` (see `ascl-ray --help`)")
    ap.add_argument("--address", default=env_address() or DEFAULT_ADDRESS,
                    help="Ray dashboard/Jobs API address (default: $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS "
                         "or %s)" % DEFAULT_ADDRESS)
    ap.add_argument("--entrypoint", help="run this shell command instead of the training command")
    ap.add_argument("--working-dir", default=str(REPO), help="code uploaded with the job (default: this checkout)")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="extra upload exclude (gitignore syntax), repeatable")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra job env var, repeatable (defaults: %s)" %
                    " ".join(f"{k}={v}" for k, v in DEFAULT_ENV_VARS.items()))
    ap.add_argument("--pip", action="append", default=[], metavar="SPEC",
                    help="runtime_env pip: a requirements file or package specs (per-job venv; slow)")
    ap.add_argument("--py-executable", metavar="PATH",
                    help="nodes' Python with ascl-ray's deps (entrypoint + runtime_env py_executable)")
    ap.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the driver")
    ap.add_argument("--entrypoint-num-gpus", type=float, help="GPUs reserved for the driver")
    ap.add_argument("--submission-id", help="job id (default: ascl-ray-<time>-<rand>)")
    ap.add_argument("--job-name", help="metadata name (default: ascl-ray-train)")
    ap.add_argument("--auth", choices=("auto", "token", "disabled"), default="auto",
                    help="auto: send a token if one is found; token: require one; disabled: add none "
                         "(Ray's SDK still adds one itself if RAY_AUTH_MODE=token is exported)")
    ap.add_argument("--auth-token-path", help="token file (default: Ray's lookup, see above)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    g.add_argument("--wait", action="store_true", help="wait until it ends, then print its logs")
    ap.add_argument("--timeout", type=float, help="seconds for --follow/--wait (default: none)")
    ap.add_argument("--dry-run", action="store_true", help="print the exact submission and exit")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    a = parser().parse_intermixed_args(argv)
    try:
        address = normalize_address(a.address)
        sub = build_submission(a)
        token = _resolve_auth(a)
        if a.dry_run:
            print(json.dumps({"address": address,
                              "auth": {"header": "Authorization: Bearer <redacted>", "token_source": token.source}
                              if token else None,
                              "submission": sub}, indent=2))
            print("\n# equivalent CLI:\n" + cli_equivalent(address, sub, token))
            return EXIT_OK
        client = connect(address, token)
        t0 = time.monotonic()
        job_id = _submit(client, address, token, sub)
        print(f"submitted {job_id} to {address} in {time.monotonic() - t0:.1f}s")
        cli = f"RAY_ADDRESS={address}" + (" RAY_AUTH_MODE=token" if token else "")
        print(f"  logs:   {cli} ray job logs -f {job_id}")
        print(f"  status: {cli} ray job status {job_id}   (stop: ... ray job stop {job_id})")
        if not (a.follow or a.wait):
            return EXIT_OK
        status = wait_for(client, job_id, a.timeout, follow=a.follow)
        if a.wait:
            sys.stdout.write(client.get_job_logs(job_id))
        print(f"job {job_id}: {status} ({time.monotonic() - t0:.1f}s after submit)")
        return EXIT_OK if status == "SUCCEEDED" else EXIT_JOB_FAILED
    except SubmitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
