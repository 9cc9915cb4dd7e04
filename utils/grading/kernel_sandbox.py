"""Each graded kernel runs in an operating-system sandbox (bubblewrap: user, pid, network, IPC and
UTS namespaces of its own), so that code in a notebook cannot reach outside its own run:

- it sees only its own processes (a pid namespace): not the grader, not its worker, not another
  notebook's kernel, so it can neither read their environment or memory nor signal them;
- it sees only the system's read-only files, the Python installation and its own throwaway folders
  (its course copy read-only; its working, home and temporary folders): not the submissions, not
  the repository, not the output folder, not another notebook's scratch folder;
- it has no network (its own, empty network namespace), so it cannot connect to another kernel;
  the worker talks to it over Unix sockets in the kernel's own folder.

The worker (outside the sandbox) reads the kernel's messages and reports events to the grader;
the reference solutions and comparisons are re-read from the grader's snapshot; only the grader
writes the reports. Where bubblewrap is missing or user namespaces are off, `problem()` says why
and the grader falls back to running kernels as its own user (every grade then carries a note).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

BWRAP = "bwrap"
_SYSTEM = ("/usr", "/etc", "/opt")  # read-only; /bin, /lib, /lib64 and /sbin follow as symlinks or binds
_LINKS = ("/bin", "/lib", "/lib64", "/sbin")


def _python_roots() -> list[str]:
    """Where this Python and its packages live (the virtualenv and the base installation)."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    return sorted(str(r) for r in roots if not any(str(r).startswith(s + "/") for s in _SYSTEM))


def bwrap_command(folders: dict[str, str]) -> list[str]:
    """The bubblewrap prefix for a kernel. `folders`: course (read-only), work, home, tmp and kernel
    (read-write; the kernel's connection file and sockets)."""
    args = [BWRAP, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--tmpfs", "/run", "--hostname", "sandbox",
            # ipykernel would watch JPY_PARENT_PID, a pid it cannot see in its own pid namespace, and
            # shut down at once; --die-with-parent ends the kernel with its worker instead
            "--unsetenv", "JPY_PARENT_PID"]
    for root in _SYSTEM:
        if Path(root).exists():
            args += ["--ro-bind", root, root]
    for link in _LINKS:
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), link]
        elif path.exists():
            args += ["--ro-bind", link, link]
    for root in _python_roots():
        args += ["--ro-bind", root, root]
    args += ["--ro-bind", folders["course"], folders["course"]]
    for name in ("work", "home", "tmp", "kernel"):
        args += ["--bind", folders[name], folders[name]]
    return args + ["--chdir", folders["work"], "--"]


def problem() -> str | None:
    """None if a sandboxed process can start here; else why not, in one line."""
    if shutil.which(BWRAP) is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        done = subprocess.run([BWRAP, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                               "--dev", "/dev", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap does not start ({type(err).__name__}: {err})"
    if done.returncode != 0:
        return f"bubblewrap cannot make namespaces here ({(done.stderr.strip() or 'exit ' + str(done.returncode))[:200]})"
    return None


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command starts inside bubblewrap (see bwrap_command)."""

    sandbox_prefix: list[str] = []

    @property
    def kernel_spec(self):
        # Interrupt by message: a SIGINT to the kernel's process group would reach bubblewrap first
        # and end the sandbox, kernel and all; ipykernel interrupts itself on an interrupt_request.
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.sandbox_prefix, *super().format_kernel_cmd(extra_arguments)]


def kernel_manager(kernel_name: str, folders: dict[str, str]) -> SandboxedKernelManager:
    """A manager for one sandboxed kernel that talks over Unix sockets in `folders["kernel"]`."""
    kernel = Path(folders["kernel"])
    km = SandboxedKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(kernel / "ipc"),
                                connection_file=str(kernel / "connection.json"))
    km.sandbox_prefix = bwrap_command(folders)
    return km
