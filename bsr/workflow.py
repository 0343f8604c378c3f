"""Run one parameterised notebook for the workflow: papermill, then HTML.

``python -m bsr.workflow NOTEBOOK EXECUTED.ipynb --html OUT.html --params JSON``

* the executed notebook is written by papermill as it runs (the Snakefile
  declares it as a ``log:``, so a failure keeps the traceback in it);
* on success the HTML copy is written atomically;
* on failure the failing cell's error is printed, no HTML is written, and the
  exit code is 1 (Snakemake then removes the rule's other outputs).

Parameters are passed as one JSON object (no type guessing, unlike ``-p``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

__all__ = ["run_notebook", "notebook_shell", "main"]


def notebook_shell(python: str | None = None, cwd: str = "notebooks") -> str:
    """The ``shell:`` line every notebook rule of the Snakefile shares.

    A Snakemake template: each interpolated value carries ``:q``, so
    Snakemake shell-quotes it (``shlex.quote``) and a path with a space, a
    ``;`` or a ``$`` reaches this module as one argument, never as shell
    syntax. ``python`` and ``cwd`` are fixed here, quoted, with any brace
    doubled so that Snakemake's formatting leaves them as they are. The rule
    must define ``input.nb``, ``log.nb``, ``output.html`` and ``params.nb``
    (the notebook parameters as a JSON string).
    """
    def fixed(text: str) -> str:
        return shlex.quote(str(text)).replace("{", "{{").replace("}", "}}")

    return (f"{fixed(python or sys.executable)} -m bsr.workflow {{input.nb:q}} {{log.nb:q}} "
            f"--html {{output.html:q}} --params {{params.nb:q}} --cwd {fixed(cwd)}")


def _write_html(executed: Path, html: Path) -> None:
    from nbconvert import HTMLExporter

    from .io import atomic_path

    body, _ = HTMLExporter().from_filename(str(executed))
    with atomic_path(html) as tmp:
        tmp.write_text(body, encoding="utf-8")


def run_notebook(notebook, executed, html=None, params: dict | None = None, cwd=None,
                 kernel: str = "python3") -> Path:
    """Execute ``notebook`` into ``executed`` with ``params``; write ``html``.

    Raises ``papermill.PapermillExecutionError`` (naming the failing cell) on
    a failure inside the notebook.
    """
    import papermill as pm

    notebook, executed = Path(notebook), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(executed), parameters=params or {}, kernel_name=kernel,
                        cwd=str(cwd) if cwd else None, progress_bar=False)
    if html:
        _write_html(executed, Path(html))
    return executed


def _skip_iri_format_checker() -> None:
    """Keep ``jsonschema`` from loading ``rfc3987_syntax`` in this process.

    papermill and nbconvert import nbformat, which imports jsonschema, which
    imports the optional ``rfc3987_syntax`` package (installed with the Jupyter
    stack) to check the JSON-schema ``iri`` format; that import compiles a
    grammar and took 1.1 s of the 2.1 s ``import papermill`` here, once per
    workflow job. The notebook schema has no ``iri`` field, so nothing checks
    it. Used only by this command's own process, never by the kernel.
    """
    sys.modules.setdefault("rfc3987_syntax", None)   # None in sys.modules: the import raises ImportError


def main(argv: list[str] | None = None) -> int:
    _skip_iri_format_checker()
    ap = argparse.ArgumentParser(prog="python -m bsr.workflow", description=__doc__.splitlines()[0])
    ap.add_argument("notebook")
    ap.add_argument("executed")
    ap.add_argument("--html", default=None)
    ap.add_argument("--params", default="{}", help="JSON object of notebook parameters")
    ap.add_argument("--cwd", default=None)
    args = ap.parse_args(argv)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        print(f"--params is not valid JSON: {e}", file=sys.stderr)
        return 2
    import papermill as pm

    try:
        run_notebook(args.notebook, args.executed, args.html, params, args.cwd)
    except pm.PapermillExecutionError as e:
        print(f"\nnotebook {args.notebook} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
              f"{''.join(e.traceback[-3:]) if e.traceback else ''}\n"
              f"the executed notebook with the full traceback: {args.executed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
