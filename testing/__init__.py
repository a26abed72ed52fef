"""Testing support shipped with pnet: the tolerance policy (and, later, program generators)."""
