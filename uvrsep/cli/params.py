"""``uvrsep params``: the shipped band configurations (:mod:`uvrsep.config`) and what uses them."""

from __future__ import annotations

import typer


def params_list() -> None:
    """List the shipped band configurations (for --params): bands, rates, FFT sizes, models."""
    from ..config import list_band_layouts, load_band_layout
    from ..hub import home_dir
    from ..registry import load_registry

    users = load_registry(home_dir()).band_config_users()
    typer.echo(f"{'name':28} {'bands':>5}  {'rates (Hz)':34} {'n_fft':24} models")
    for name in list_band_layouts():
        layout = load_band_layout(name)
        rates = "/".join(str(b.sample_rate) for b in layout.bands)
        ffts = "/".join(str(b.n_fft) for b in layout.bands)
        typer.echo(f"{name:28} {len(layout.bands):>5}  {rates:34} {ffts:24} {', '.join(users.get(name, [])) or '-'}")
