"""The smart-city programme board: phases, items, owners, budget by source, milestones."""
