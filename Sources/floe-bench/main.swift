print("floe-bench: not yet implemented")
