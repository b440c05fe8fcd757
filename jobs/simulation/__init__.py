"""Trading simulations: strategies (``strategies``), portfolio arithmetic (``portfolio``), result
metrics (``metrics``) and the configured models with their per-day step (``catalog``).

The modules here are pure domain code: no database, no web, no job machinery. Import the
submodules directly; this package module stays empty so importing it costs nothing.
"""
