"""Generated code of the planner protocol v1 (see proto/generate.py)."""
