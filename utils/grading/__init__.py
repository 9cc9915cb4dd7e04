"""The grader behind `python -m utils.grade`, one job per module.

- `restore`: recognise a submission's chapter and rebuild the notebook that is run, with the
  setup and check cells put back from the chapter source (`utils.build`).
- `review`: what cannot be prevented is flagged: a static scan of the student's own cells, and
  copies of the reference solution.
- `sandbox`: a throwaway read-only copy of the course per notebook, a minimal environment,
  resource limits, and ending a notebook's whole process tree.
- `worker`: runs one notebook in a fresh kernel (its own process, so a kernel that kills its
  parent takes nothing else down) and reports what it observes cell by cell.
- `results`: turns those observations into one result per exercise and writes the reports.
- `cli`: the command line; grades are written after every notebook.

The trust model is in the docstring of `cli`.
"""
