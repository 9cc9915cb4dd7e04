"""Run one restored notebook in a fresh kernel and report what is observed, cell by cell.

    python -m utils.grading.worker < job.json

The grader starts this in its own process (and session) inside the notebook's throwaway course
copy, so a kernel that kills its parent, or a worker that dies, costs that notebook only. The
job comes on stdin; one JSON line per event goes to stdout, which the kernel does not share:

    {"cell": i, "count": n, "status": "ok"|"error", "ename": ..., "evalue": ..., "timed_out": bool,
     "marker": "<text after the check marker>"|null, "output_bytes": n, "output_capped": bool}
    {"tampered": [paths]}   before a check cell: course files changed, and put back
    {"end": "done"|"dead"|"budget"|"error", "detail": ...}

Outputs are not kept: only errors and the check cells' marker lines are read, so endless output
costs no memory; past `output_limit` bytes the cell is interrupted. Only when the job asks for it
(`keep_text`: a byte budget, the grader's `--printed`) does each cell event also carry the text the
cell showed (`"text"`, as `utils.text_check.output_text` reads an output), up to that budget for the
whole notebook.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from utils.grading.sandbox import limit_resources
from utils.text_check import output_text

TIMEOUT_ENAME = "CellTimeout"
OUTPUT_ENAME = "OutputLimit"
_LINE_CAP = 1 << 16


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class BudgetExceeded(Exception):
    pass


class _CellState:
    def __init__(self):
        self.ename = self.evalue = None
        self.marker = None
        self.markers = 0
        self.pending = ""
        self.bytes = 0
        self.capped = False
        self.text: list[str] = []


class GradingClient(NotebookClient):
    def __init__(self, notebook, job: dict, **kwargs):
        super().__init__(notebook, **kwargs)
        self.job = job
        self.check_cells = {int(i): nonce for i, nonce in job["check_cells"].items()}
        self.states: dict[int, _CellState] = {}
        self.deadline = time.monotonic() + job["budget"]
        self.course = Path(job["course_root"])
        self.protected = {name: text.encode() for name, text in job["protected"].items()}
        self.on_cell_start = self._start
        self.on_cell_execute = self._before_execute
        self.on_cell_executed = self._executed
        self.text_left = int(job.get("keep_text") or 0)  # bytes of shown text still to keep
        self.timeout_func = lambda cell: max(1, min(job["timeout"], int(self.deadline - time.monotonic()) + 1))

    def _start(self, cell, cell_index):
        if time.monotonic() >= self.deadline:
            raise BudgetExceeded()
        self.states[cell_index] = _CellState()
        self.states[cell_index].started = time.monotonic()

    def _before_execute(self, cell, cell_index):
        if cell_index in self.check_cells:
            changed = []
            for name, data in self.protected.items():
                path = self.course / name
                try:
                    same = hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
                except OSError:
                    same = False
                if not same:
                    changed.append(name)
                    try:  # put the course file back before the check loads it
                        path.unlink(missing_ok=True)
                        path.write_bytes(data)
                    except OSError:
                        pass
            if changed:
                emit({"tampered": changed})

    def _executed(self, cell, cell_index, execute_reply):
        state = self.states.get(cell_index, _CellState())
        content = (execute_reply or {}).get("content", {})
        status = content.get("status", "error")
        ename, evalue = state.ename, state.evalue
        timed_out = content.get("ename") == TIMEOUT_ENAME
        if timed_out:
            ename, evalue = TIMEOUT_ENAME, content.get("evalue")
        elif state.capped:
            ename, evalue, status = OUTPUT_ENAME, f"it printed more than {self.job['output_limit']} bytes and was interrupted", "error"
        elif status == "error" and ename is None:
            ename, evalue = content.get("ename"), content.get("evalue")
        emit({
            "cell": cell_index, "count": cell.get("execution_count"), "status": status,
            "ename": ename, "evalue": (evalue or "")[:2000] if ename else None, "timed_out": timed_out,
            "marker": state.marker, "markers": state.markers, "output_bytes": state.bytes, "output_capped": state.capped,
            "seconds": round(time.monotonic() - getattr(state, "started", time.monotonic()), 2),
            **({"text": "\n".join(state.text)} if self.job.get("keep_text") else {}),
        })

    def output(self, outs, msg, display_id, cell_index):
        """Read an output, keep none of it."""
        state = self.states.setdefault(cell_index, _CellState())
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text = str(content.get("text", ""))
            state.bytes += len(text)
            if cell_index in self.check_cells and content.get("name") == "stdout":
                lines = (state.pending + text).split("\n")
                state.pending = lines.pop()[-_LINE_CAP:]
                nonce = self.check_cells[cell_index]
                for line in lines:
                    if line.startswith(nonce):
                        state.marker = line[len(nonce):]
                        state.markers += 1
        elif kind == "error":
            state.ename, state.evalue = str(content.get("ename")), str(content.get("evalue"))
        else:
            state.bytes += sum(len(str(v)) for v in (content.get("data") or {}).values())
        if self.text_left > 0 and kind in ("stream", "display_data", "execute_result"):
            shown = output_text({"output_type": kind, **content})
            if cell_index in self.check_cells:  # the result markers are the grader's, not the notebook's text
                nonce = self.check_cells[cell_index]
                shown = "\n".join(line for line in shown.split("\n") if not line.startswith(nonce))
            shown = shown[: self.text_left]
            self.text_left -= len(shown)
            state.text.append(shown)
        if state.bytes > self.job["output_limit"] and not state.capped:
            state.capped = True
            asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
        return None


def main() -> int:
    job = json.loads(sys.stdin.read())
    limit_resources(job["memory_gb"])  # inherited by the kernel and everything it starts
    notebook = nbformat.reads(job["notebook"], as_version=4)
    km = None
    if job.get("sandbox"):  # the kernel starts inside bubblewrap (utils/grading/kernel_sandbox.py)
        from utils.grading.kernel_sandbox import kernel_manager

        km = kernel_manager(job["kernel"], job["sandbox"])
    client = GradingClient(
        notebook,
        job,
        km=km,
        timeout=job["timeout"],
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"it ran longer than {job['timeout']} s and was interrupted",
                          "traceback": []},
        kernel_name=job["kernel"],
        startup_timeout=300,  # a busy machine can take minutes to start a kernel
        resources={"metadata": {"path": job["cwd"]}},
    )
    log = Path(job["kernel_log"])
    emit({"started": time.monotonic()})
    with open(log, "w", encoding="utf-8") as kernel_output:
        try:
            client.execute(env=dict(os.environ), stdout=kernel_output, stderr=kernel_output)
        except BudgetExceeded:
            emit({"end": "budget", "detail": f"the notebook ran longer than its budget of {job['budget']} s"})
            return 0
        except DeadKernelError:
            kernel_output.flush()
            last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            emit({"end": "dead", "detail": " ".join(["the kernel died.", *last])[:500]})
            return 0
        except Exception as err:  # no such kernel, a kernel that never starts, ...
            emit({"end": "error", "detail": f"{type(err).__name__}: {err}"[:500]})
            return 0
    emit({"end": "done", "detail": ""})
    return 0


if __name__ == "__main__":
    sys.exit(main())
