"""``python run.py ARGS`` for the tests, in a child forked from a process that imported the suite once.

A fresh interpreter spends about 2.5 s of CPU importing torch, gymnasium and the suite before it
does anything, and most tests run the CLI.  So the tests fork each CLI run from a server process that
made those imports once (multiprocessing's forkserver, with them preloaded; the server never runs a
tensor operation, so no thread pool is forked).  The child gets what a fresh process would get from
the test: its own argument list, environment, working directory, stdout and stderr, its exit status
from the CLI, and the interpreter's exit handlers on the way out.

What a fork cannot give stays a fresh process: calls that change the environment's variables (some
are read when a library is imported), and with ``RLSMOOTH_TESTS_FRESH_PROCESSES=1``, every call.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback

PRELOAD = ["numpy", "torch", "gymnasium", "yaml", "torch.utils.tensorboard", "rlsmooth.cli",
           "rlsmooth.training", "rlsmooth.population.loop", "rlsmooth.experiments.sweep",
           "rlsmooth.experiments.report", "minatar"]
FRESH = os.environ.get("RLSMOOTH_TESTS_FRESH_PROCESSES") == "1"
_context = None


def _server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload([__name__, *PRELOAD])
    return _context


def _exit_status(code) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(script: str, args: list[str], env: dict, cwd: str, out_path: str, err_path: str) -> None:
    """The forked run: the test's stdout/stderr on fds 1 and 2, its environment and directory, then the
    CLI as ``run.py`` calls it; ends the process itself with the CLI's status."""
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [script, *args]
    status = 1
    try:
        from rlsmooth.cli import main
        status = _exit_status(main(args))
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:   # what an uncaught exception does in a fresh interpreter
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def run(command: list[str], env: dict, cwd: str, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True)`` for ``command`` = [python, run.py, ...]."""
    script, args = command[1], command[2:]
    with tempfile.TemporaryDirectory(prefix="rlsmooth-cli-") as folder:
        out_path, err_path = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        for path in (out_path, err_path):
            open(path, "w").close()
        child = _server().Process(target=_child, args=(script, args, env, cwd, out_path, err_path))
        child.start()
        child.join(timeout)
        timed_out = child.is_alive()
        if timed_out:
            child.kill()
            child.join()

        def read(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        stdout, stderr = read(out_path), read(err_path)
    if timed_out:
        raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(command, child.exitcode, stdout, stderr)
