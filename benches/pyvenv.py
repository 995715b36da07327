"""The virtual environment the comparison scripts in benches/ run their Python side in."""
import importlib.util
import os
import subprocess
import sys


def ensure_venv(venv, packages, module):
    """Returns when `module` is importable; otherwise creates `venv` if needed, installs
    `packages` there with pip and re-executes the calling script inside it (once: a second
    failure to import `module` exits with a message instead of looping)."""
    if importlib.util.find_spec(module) is not None:
        return
    python = os.path.join(venv, "bin", "python")
    if os.environ.get("SLM_BENCH_REEXEC"):
        sys.exit(f"{module} is still not importable from {python}")
    if not os.path.exists(python):
        print(f"creating {venv} and installing {' '.join(packages)} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
        check=True,
    )
    script = os.path.abspath(sys.argv[0])
    env = dict(os.environ, SLM_BENCH_REEXEC="1")
    os.execve(python, [python, script, *sys.argv[1:]], env)
