"""Hot loops of rgals (installed as ``rgals.kernels``): arrays in, arrays out."""
