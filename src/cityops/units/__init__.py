"""Units: administrative units, their history and boundaries, areas and departments."""
