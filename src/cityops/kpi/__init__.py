"""KPI engine: the indicator catalogue, computation per unit, area and period, targets,
ranking and the pilot evaluation."""
