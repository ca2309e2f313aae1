"""The renderer's geometric constants, in a numba-free module that every renderer part imports.

TILE is the tile edge in pixels (the official kernel's value): the one definition, for the torch
code and the Numba kernels (_kernels, _forward, _backward), which compile it in as a constant.
Numba's on-disk cache is keyed on each kernel's own file, not on the globals it imports: after
changing TILE, delete the renderer's __pycache__/*.nbi/*.nbc (tests/test_render.py checks the
kernels).
"""

TILE = 16
SIGMA_RADIUS = 3.0  # a Gaussian covers the circle of radius 3 sqrt(lambda_max)
