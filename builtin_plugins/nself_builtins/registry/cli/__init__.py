"""The registry's commands: ``registry`` (``nself registry ...``) and ``plugin`` (its part of
``nself plugin ...``), one module-level Typer app each."""
