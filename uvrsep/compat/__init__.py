"""Drop-in replacements for other projects' separation APIs (see :mod:`uvrsep.compat.uvr5`)."""
