"""A sweep's runs several at once on one machine (`--parallel N`, make's PARALLEL=N): each run a process of its own
(`run <sweep> <run> --child`), N at a time, on the same device; a big GPU is rarely filled by one small run.

The children share what can be shared: the packed corpus (packed here first, once, so none waits on another), one
compile cache (TORCHINDUCTOR_CACHE_DIR), and on a GPU one CUDA MPS server when one can be started (their kernels then
overlap; otherwise the GPU time-slices between them). Each run's directory, rows and hashes are those a sequential
sweep writes: a run's config, not the order runs happen in, decides its results. A run that fails stops none of the
others; the failures are listed at the end, each with its log (`<results>/<sweep>/<scale>/logs/<run>.log`), and the
table holds every run that finished, so the same command again runs only the failed ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.datamodule import PretrainDataModule
from lightning_electra.errors import SuiteError
from lightning_electra.io import ROOT
from lightning_electra.log import logger
from lightning_electra.provenance import usable_cores
from lightning_electra.runner.resolved import ResolvedRun
from lightning_electra.runner.store import not_finished, write_sweep_table
from lightning_electra.runner.sweep import sweep_guard

parallel_log = logger("parallel")
sweep_log = logger("sweep")


class RunsFailed(SuiteError):
    """Runs of a parallel sweep that did not finish, each with the end of its log."""


def child_command(sweep_arg: str, scale: str, run: str, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "lightning_electra", "run", sweep_arg, run, "--scale", scale, "--child", *overrides]


def child_environment(cfg: Config, parallel: int, mps: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, **mps)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cfg.data.cache_dir).resolve() / "inductor"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if not torch.cuda.is_available():  # on a CPU, the cores split between the runs rather than each asking for all
        env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // parallel)))
    return env


@contextlib.contextmanager
def mps_server() -> Iterator[dict[str, str]]:
    """A CUDA MPS control daemon of this sweep's own (its pipes in a temporary folder, quit at the end), and the
    environment that points children at it; nothing where there is no GPU or no nvidia-cuda-mps-control."""
    control = shutil.which("nvidia-cuda-mps-control")
    if not torch.cuda.is_available() or control is None:
        if torch.cuda.is_available():
            parallel_log.info("no nvidia-cuda-mps-control: the runs time-share the GPU")
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="mps-") as tmp:
        env = {"CUDA_MPS_PIPE_DIRECTORY": f"{tmp}/pipe", "CUDA_MPS_LOG_DIRECTORY": f"{tmp}/log"}
        for folder in env.values():
            os.makedirs(folder)
        started = subprocess.run([control, "-d"], env=dict(os.environ, **env), capture_output=True, text=True)
        if started.returncode != 0:
            parallel_log.info(f"CUDA MPS did not start ({started.stderr.strip() or started.returncode}): the runs "
                              "time-share the GPU")
            yield {}
            return
        try:
            # the daemon starts its server at the first client: a client that cannot reach the GPU through it means
            # every run would fail at its first CUDA call, so probe once and fall back to time-sharing
            probe = subprocess.run([sys.executable, "-c", "import torch; torch.zeros(1, device='cuda').sum().item()"],
                                   env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)
            if probe.returncode == 0:
                parallel_log.info("CUDA MPS server started: the runs' kernels overlap on the GPU")
            else:
                why = probe.stderr.strip().splitlines()[-1:] or probe.returncode
                parallel_log.info(f"CUDA MPS started but a client could not use the GPU through it ({why}): the runs "
                                  "time-share the GPU")
                env = {}
            yield env
        finally:
            subprocess.run([control], input="quit\n", env=dict(os.environ, CUDA_MPS_PIPE_DIRECTORY=f"{tmp}/pipe",
                                                                CUDA_MPS_LOG_DIRECTORY=f"{tmp}/log"),
                           capture_output=True, text=True)


def die_with_parent() -> None:
    """Called first thing in a child: SIGTERM when the parent sweep dies (Linux), so a killed sweep leaves no runs
    behind (set by the child itself: a preexec_fn is unsafe beside the parent's relay threads)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _relay(process: subprocess.Popen, prefix: str, log: Path) -> None:
    """A child's output, line by line, to the sweep's output with the run's name in front, and whole to its log."""
    with open(log, "a") as f:
        for line in process.stdout:
            f.write(line)
            f.flush()
            sys.stdout.write(f"{prefix} {line}")
            sys.stdout.flush()


class Stopped(BaseException):
    """SIGTERM to a parallel sweep's parent: raised in its own polling loop, so that its cleanup runs."""


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """While the parent polls its children, SIGTERM raises Stopped (rather than the CLI's os._exit) so the children
    are stopped and waited for, the MPS server quit and the lock released; then the process exits as SIGTERM's."""
    def handler(signum, frame):
        raise Stopped()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Stopped:
        sys.stdout.flush()
        os._exit(128 + signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(running: dict[str, tuple[subprocess.Popen, threading.Thread]], grace_s: float = 15.0) -> None:
    """The runs still going, stopped (SIGTERM, which each takes at once; SIGKILL after `grace_s`) and waited for."""
    for process, _ in running.values():
        process.terminate()
    deadline = time.time() + grace_s
    for process, relay in running.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        relay.join(timeout=5)


def check_parallel(runs: list[ResolvedRun], parallel: int) -> None:
    if parallel < 1:
        raise ConfigError(f"--parallel {parallel}: the number of runs at once is at least 1.")
    many = sorted({run.hardware.world_size for run in runs} - {1})
    if parallel > 1 and many:
        raise ConfigError(f"--parallel {parallel} runs several one-device runs at once, but these runs each take "
                          f"{many[0]} devices (train.devices={runs[0].cfg.train.devices}). Give each one device "
                          "(DEVICES=1), or drop PARALLEL and let each run use them all.")


def run_parallel(name: str, sweep: dict, sweep_arg: str, runs: list[ResolvedRun], selected: list[ResolvedRun],
                 overrides: list[str], parallel: int, command: str) -> tuple[Path, list[str]]:
    """Runs `selected` at most `parallel` at a time, each in a child process, then writes the sweep's table of every
    finished run; returns it and the names of the runs that failed."""
    start = time.time()
    configs = [run.cfg for run in runs]
    scale, results_dir = configs[0].scale, Path(configs[0].results_dir)
    asked, selected = selected, not_finished(name, runs, selected)
    check_parallel(selected, parallel)
    logs = results_dir / name / scale / "logs"
    sweep_log.info(f"{name} at scale {scale}: {len(selected)} of {len(configs)} runs, {parallel} at once "
                   f"(logs: {logs})")
    with stopped_by_sigterm(), sweep_guard(name, runs, selected):
        todo = [run.cfg for run in selected if not run.table.exists()]
        packed = set()
        for cfg in todo:  # each corpus packed once, here, before the runs that read it start
            data = PretrainDataModule(cfg)
            if data.cache not in packed:
                data.prepare_data()
                packed.add(data.cache)
        logs.mkdir(parents=True, exist_ok=True)
        failed: list[str] = []
        running: dict[str, tuple[subprocess.Popen, threading.Thread]] = {}
        width = max((len(c.name) for c in todo), default=0)
        with mps_server() as mps:
            try:
                waiting = list(todo)
                while waiting or running:
                    while waiting and len(running) < parallel:
                        cfg = waiting.pop(0)
                        log = logs / f"{cfg.name}.log"
                        log.write_text("")
                        process = subprocess.Popen(
                            child_command(sweep_arg, scale, cfg.name, overrides), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, env=child_environment(cfg, parallel, mps))
                        relay = threading.Thread(target=_relay, args=(process, f"[{cfg.name:{width}s}]", log),
                                                 daemon=True)
                        relay.start()
                        running[cfg.name] = (process, relay)
                    time.sleep(0.2)
                    for run, (process, relay) in list(running.items()):
                        if process.poll() is not None:
                            relay.join()
                            del running[run]
                            if process.returncode != 0:
                                failed.append(run)
                                parallel_log.info(f"run {run} failed (exit {process.returncode}); the others go on")
            finally:
                stop(running)
        ran = [run for run in selected if run.name not in failed] if asked else None
        table = write_sweep_table(name, sweep, runs, ran, command, time.time() - start)
    return table, failed


def failure_message(name: str, failed: list[str], logs: Path) -> str:
    tails = []
    for run in failed:
        lines = (logs / f"{run}.log").read_text().splitlines()
        last = next((line for line in reversed(lines) if line.strip()), "(no output)")
        tails.append(f"  {run}: {last}  ({logs / f'{run}.log'})")
    return (f"{len(failed)} run(s) of {name} failed; the others finished and are in the table:\n" + "\n".join(tails)
            + "\nFix what their logs say, then run the same command again: it runs only what is not finished.")
