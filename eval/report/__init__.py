"""Tables and figures regenerated from run records alone.

    python -m eval.report [RUNS_DIR] [--sweep NAME [--with KEY=VALUE ...]] [--out DIR] [--readme FILE | --docs DIR]

reads every ``record.json`` under ``RUNS_DIR`` (default ``outputs/runs``; with ``--sweep`` only the
runs that sweep's grid selects), builds one pandas DataFrame (one row per run), and writes into
``--out`` (default ``outputs/reports/<sweep or all>``):

* ``table.{md,tex,csv}`` -- the paper's layout: one row per (method, scheduler, non-grid override),
  one column group per forget split, mean ± stderr over seeds, an arrow for each metric's better
  direction, the best value of each column in bold; the target and retain models as reference rows;
  failed, diverged or missing runs shown as such, never as zeros;
* figures (PNG and PDF), one panel per split, one mark or curve per method + scheduler + variant
  (mean over seeds, standard-error bars or bands where there are several): the final trade-off
  (TOFU: forget quality vs model utility; MUSE: KnowMem on D_f vs on D_r), the same along
  unlearning (trajectories), GeN's learning rate, task gradient norms and cosines, task losses;
  ``variants.md``: the key of the short variant ids (``v1``, ...) they use (:mod:`eval.report.style`);
* the runs' warnings (:mod:`eval.health`) under ``table.md``, counted in ``table.csv``, printed.

Nothing in a table is typed by hand: deleting ``outputs/reports`` and re-running this command gives
identical tables.
"""

